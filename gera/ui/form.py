"""The training form's one spec: ``TrainForm``'s fields name the form's components, the
``/train`` API's parameters (same names, same order) and the values a job gets; its defaults are
what the page starts with."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence

from gera.encoders import default_encoders
from gera.methods import DEFAULT_METHODS
from gera.settings import TrainConfig

UPLOAD, FOLDER = "upload", "folder"  # task choices that name no built-in task


@dataclass(frozen=True)
class TrainForm:
    """The training form: field = component = ``/train`` API parameter (same name, same order);
    the defaults are what the page starts with, sized to finish in about a minute on 2 CPU cores
    with a warm embedding cache (one seed, no tuning grid). Training options default to
    ``TrainConfig``'s."""

    pair: str = "image"  # "image" (image ↔ text) | "speech" (speech ↔ text)
    task: str = "emoji"  # a task name, or UPLOAD / FOLDER
    upload: Optional[str] = None  # the uploaded .zip of pairs (task = UPLOAD)
    folder: str = ""  # a folder on the server (task = FOLDER, where allowed)
    encoder_a: str = default_encoders("image")[0]
    encoder_b: str = default_encoders("image")[1]
    budgets: Sequence[str] = ("100",)  # paired budgets N; several = a sweep
    unpaired_a: str = ""  # blank = the task's default pool
    unpaired_b: str = ""
    methods: Sequence[str] = DEFAULT_METHODS
    alpha: float = TrainConfig.alpha
    k: int = TrainConfig.k
    kernel: str = TrainConfig.kernel
    max_steps: int = TrainConfig.max_steps
    seeds: int = 1
    grid_size: int = 1
    task_options: str = ""  # "KEY=VALUE, …" as the CLI's --task-option


FORM_FIELDS = tuple(f.name for f in fields(TrainForm))
TRAIN_FIELDS = tuple(f for f in FORM_FIELDS if f in {t.name for t in fields(TrainConfig)})
