"""Which model set a selector means: a shipped one (shared) or the user's own run (session)."""
from __future__ import annotations

from typing import Optional

from gera.errors import GeraError
from gera.ui.models import ModelSet, ShippedModels
from gera.ui.training import Session

SESSION_KEY = "session"


def resolve(shipped: ShippedModels, session: Optional[Session], key: Optional[str]) -> ModelSet:
    if key == SESSION_KEY:
        if session is None:
            raise GeraError("Your session has no trained model yet: train one in the Train & "
                            "compare tab, or choose the shipped checkpoints.")
        return session.models
    if not key:
        raise GeraError("No model to use: this app found no checkpoints in checkpoints/ "
                        "(scripts/make_checkpoints.sh makes them); train one in the Train & "
                        "compare tab.")
    return shipped.get(key)
