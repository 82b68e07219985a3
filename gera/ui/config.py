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
from gera.ui.limits import Limits, public_mode

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FOLDER = REPO_ROOT / "assets" / "example-folder"

# Budgets offered in the form: log-spaced from 10 to 10k.
BUDGETS = (10, 30, 100, 300, 1000, 3000, 10000)


def server_name() -> str:
    """GRADIO_SERVER_NAME when set; else every interface on a Space, loopback elsewhere."""
    return os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if os.environ.get("SPACE_ID")
                                                    else "127.0.0.1")


# Hub encoders the form suggests where the Hub is reachable (a Space), by modality.
HUB_SUGGESTIONS = {"image": ["openclip:ViT-B-32:laion2b_s34b_b79k", "hf:google/vit-base-patch16-224"],
                   "text": ["hf:sentence-transformers/all-mpnet-base-v2"],
                   "speech": ["hf:facebook/wav2vec2-base"]}
# On a public app, the encoders a visitor may pick unless GERA_ALLOWED_ENCODERS says otherwise:
# the bundled ones and those suggestions, well-known models of modest size.
PUBLIC_ENCODERS = ("mobilenet_v2", "efficientnet_lite0", "minilm", "phonetic", "speech_embedding",
                   "whisper_base", *(name for names in HUB_SUGGESTIONS.values() for name in names))


@dataclass(frozen=True)
class AppConfig:
    """Everything ``build_app`` needs. ``from_env`` reads the operator's settings (README,
    "Running it publicly")."""

    checkpoints: Path = REPO_ROOT / "checkpoints"
    results: Path = REPO_ROOT / "results"
    # Items per modality searched in the Retrieval tab and plotted in Neighbourhoods: held-out
    # items first. Bounded so start-up reads a few MB of cached embeddings, not a whole task.
    gallery_limit: int = 2000
    # Training jobs running at once; more wait in the queue. One suits 2 CPU cores or one GPU.
    train_concurrency: int = 1
    queue_size: int = 64
    # Public: anyone may use it (a Space, or GERA_PUBLIC=1). Then visitors' task options and
    # encoders come from allow-lists, jobs and visitors have limits, and the server's folders
    # are out of reach.
    public: bool = field(default_factory=public_mode)
    limits: Limits = field(default_factory=Limits)
    allowed_encoders: Optional[tuple[str, ...]] = None  # None: any name (a local run)
    allow_server_folders: bool = field(default_factory=lambda: not public_mode())
    defaults: TrainForm = field(default_factory=TrainForm)  # the training form's initial values

    def __post_init__(self):
        # One flag makes an app public: whatever was not set explicitly follows it.
        if self.public:
            if self.allowed_encoders is None:
                object.__setattr__(self, "allowed_encoders", PUBLIC_ENCODERS)
            if self.limits == Limits():
                object.__setattr__(self, "limits", Limits.public())
            object.__setattr__(self, "allow_server_folders", False)

    @classmethod
    def from_env(cls, **overrides) -> "AppConfig":
        """GERA_CHECKPOINTS, GERA_GALLERY_LIMIT, GERA_TRAIN_CONCURRENCY, GERA_PUBLIC,
        GERA_ALLOWED_ENCODERS (comma-separated) and the ``Limits`` variables override the
        defaults; ``overrides`` override those."""
        public = overrides.get("public", public_mode())
        env = {"public": public, "limits": Limits.from_env(public),
               "allow_server_folders": not public}
        allowed = os.environ.get("GERA_ALLOWED_ENCODERS", "").strip()
        if allowed:
            env["allowed_encoders"] = tuple(e.strip() for e in allowed.split(",") if e.strip())
        elif public:
            env["allowed_encoders"] = PUBLIC_ENCODERS
        if os.environ.get("GERA_CHECKPOINTS"):
            env["checkpoints"] = Path(os.environ["GERA_CHECKPOINTS"])
        if os.environ.get("GERA_GALLERY_LIMIT"):
            env["gallery_limit"] = int(os.environ["GERA_GALLERY_LIMIT"])
        if os.environ.get("GERA_TRAIN_CONCURRENCY"):
            env["train_concurrency"] = int(os.environ["GERA_TRAIN_CONCURRENCY"])
        return cls(**{**env, **overrides})
