"""What a job is made of, as plain data: ``TrainConfig`` (one training run of the heads) and
``CompareSettings`` (one fair comparison). No torch here: the CLI builds its options and the app
its form from these fields, and ``python -m gera --help`` must start fast."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass
class TrainConfig:
    """Everything that defines a training job (defaults are the documented choices).

    The first block is GeRA's geometric term (contrastive-only ignores it); the rest is the loop
    every trained method shares: heads, optimiser, schedule, early stopping.
    """

    alpha: float = 1.0  # weight of the geometric term; 0 = contrastive only
    k: int = 10  # neighbours per anchor per step
    k_pool: int = 50  # ...sampled from each point's k_pool nearest in the original space
    kernel: str = "heat"  # heat | inverse | linear | squared
    divergence: str = "frobenius"  # frobenius | kl
    geo_batch: int = 16  # anchors per modality per step for the geometric term
    head: str = "mlp"  # mlp | linear
    dim: int = 256  # shared space dimension
    hidden: int = 512  # MLP hidden width
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 0.07  # initial InfoNCE temperature (learned)
    batch_size: int = 256  # pairs per step (all of them when there are fewer)
    max_steps: int = 1000
    eval_every: int = 10  # steps between validation checks
    patience: int = 10  # validation checks without improvement before stopping
    center: bool = True  # centre each modality by its pool mean before normalising
    device: str = "auto"  # auto = cuda > mps > cpu
    # CPU threads for the heads. They are small, and two processes sharing the cores with
    # multi-threaded OpenMP stalled each other ~30x here (a second user, a test run); one thread
    # costs little when alone.
    cpu_threads: int = 1


def _all_methods() -> tuple[str, ...]:
    from gera.methods import METHODS  # the registry fills as gera.methods is imported

    return METHODS


@dataclass
class CompareSettings:
    """What ``compare`` runs.

    ``grid_size``: settings tried per method, the same number for every method (1 = each
    method's first grid point; 0 = no grid at all: the trained methods use ``train`` exactly as
    given and the training-free ones their defaults — for ablations).
    """

    task: str = "fashion-mnist"
    task_options: dict = field(default_factory=dict)  # passed to get_task (e.g. n_test)
    budget: int = 100
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    methods: Sequence[str] = field(default_factory=_all_methods)
    encoder_a: Optional[str] = None  # None = the task's modality default
    encoder_b: Optional[str] = None
    unpaired_a: Optional[int] = None  # None = the task's default pool size
    unpaired_b: Optional[int] = None
    grid_size: int = 3
    train: TrainConfig = field(default_factory=TrainConfig)
    neighbourhood_k: int = 10
