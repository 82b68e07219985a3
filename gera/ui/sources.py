"""Which model set a selector means: a shipped one (shared) or the user's own run (session)."""
from __future__ import annotations

from typing import Optional

from gera.errors import GeraError
from gera.ui.models import ModelSet, ShippedModels
from gera.ui.training import Session

SESSION_KEY = "session"


def budget_choices(shipped: ShippedModels, session: Optional[Session],
                   key: Optional[str]) -> tuple[list[tuple[str, int]], Optional[int]]:
    """What a budget selector offers for model ``key``: ``([(label, N), …], default N)``."""
    if key == SESSION_KEY:
        budget = None if session is None else session.models.budget
        return ([(f"N = {budget}", budget)] if budget is not None else []), budget
    if not key or not shipped.budgets(key):
        return [], None
    return [(f"N = {b}", b) for b in shipped.budgets(key)], shipped.default_budget(key)


def resolve(shipped: ShippedModels, session: Optional[Session], key: Optional[str],
            budget: object = None) -> ModelSet:
    """The model set ``key`` names; for shipped ones, at ``budget`` (one of the shipped budgets,
    checked: it may come from anyone; None = the default). A user's own run has the one budget
    it was trained at, whatever ``budget`` says."""
    if key == SESSION_KEY:
        if session is None:
            raise GeraError("Your session has no trained model yet: train one in the Train & "
                            "compare tab, or choose the shipped checkpoints.")
        return session.models
    if not key:
        raise GeraError("No model to use: this app found no checkpoints in checkpoints/ "
                        "(scripts/make_checkpoints.sh makes them); train one in the Train & "
                        "compare tab.")
    return shipped.get(key, budget)
