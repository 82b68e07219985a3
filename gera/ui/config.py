"""What the app starts with: where checkpoints and results live, gallery size, the form's values.

Everything here can be set from the environment, so a Space, ``make run`` and the tests launch the
same ``build_app`` with different settings (tests use tiny galleries and a private cache).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gera.ui.form import TrainForm

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FOLDER = REPO_ROOT / "assets" / "example-folder"

# Budgets offered in the form: log-spaced from 10 to 10k.
BUDGETS = (10, 30, 100, 300, 1000, 3000, 10000)


def on_space() -> bool:
    """Running on a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def server_name() -> str:
    """GRADIO_SERVER_NAME when set; else every interface on a Space, loopback elsewhere."""
    return os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else "127.0.0.1")


@dataclass(frozen=True)
class AppConfig:
    checkpoints: Path = REPO_ROOT / "checkpoints"
    results: Path = REPO_ROOT / "results"
    # Items per modality searched in the Retrieval tab and plotted in Neighbourhoods: held-out
    # items first. Bounded so start-up reads a few MB of cached embeddings, not a whole task.
    gallery_limit: int = 2000
    # Training jobs running at once; more wait in the queue. One suits 2 CPU cores or one GPU.
    train_concurrency: int = 1
    queue_size: int = 64
    allow_server_folders: bool = field(default_factory=lambda: not on_space())
    defaults: TrainForm = field(default_factory=TrainForm)  # the training form's initial values

    @classmethod
    def from_env(cls, **overrides) -> "AppConfig":
        """GERA_CHECKPOINTS, GERA_GALLERY_LIMIT, GERA_TRAIN_CONCURRENCY override the defaults."""
        env = {}
        if os.environ.get("GERA_CHECKPOINTS"):
            env["checkpoints"] = Path(os.environ["GERA_CHECKPOINTS"])
        if os.environ.get("GERA_GALLERY_LIMIT"):
            env["gallery_limit"] = int(os.environ["GERA_GALLERY_LIMIT"])
        if os.environ.get("GERA_TRAIN_CONCURRENCY"):
            env["train_concurrency"] = int(os.environ["GERA_TRAIN_CONCURRENCY"])
        return cls(**{**env, **overrides})
