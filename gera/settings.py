"""What a job is made of, as plain data: ``TrainConfig`` (one training run of the heads) and
``CompareSettings`` (one fair comparison). No torch here: the CLI builds its options and the app
its form from these fields, and ``python -m gera --help`` must start fast."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from gera.errors import GeraError
from gera.geometry import KERNELS

HEADS = ("mlp", "linear")
DIVERGENCES = ("frobenius", "kl")
MATMUL_PRECISIONS = ("highest", "high", "medium")
STACK_FITS = ("auto", "always", "never")


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
    eps_a: float = 0.0  # heat-kernel bandwidth on A; 0 = the pool's own (median k-th nbr dist²)
    eps_b: float = 0.0  # ... on B (pool ablations fix both, so density does not move ε)
    head: str = "mlp"  # mlp | linear
    dim: int = 256  # shared space dimension
    hidden: int = 512  # MLP hidden width
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 0.07  # initial InfoNCE temperature (learned)
    batch_size: int = 256  # pairs per step (all of them when there are fewer)
    multi_positive: bool = False  # InfoNCE counts every pair sharing the query's item as positive
    max_steps: int = 1000
    eval_every: int = 10  # steps between validation checks
    patience: int = 10  # validation checks without improvement before stopping
    early_stopping: bool = True  # False: run max_steps and keep the last state
    center: bool = True  # centre each modality by its pool mean before normalising
    device: str = "auto"  # auto = cuda > mps > cpu
    # CPU threads for the heads. They are small, and two processes sharing the cores with
    # multi-threaded OpenMP stalled each other ~30x here (a second user, a test run); one thread
    # costs little when alone.
    cpu_threads: int = 1
    # How the training steps' float32 matrix products run: torch.set_float32_matmul_precision's
    # values. "highest" leaves torch's setting as the process has it (exact float32 unless the
    # process changed it); "medium" rounds the inputs to bfloat16 and accumulates in float32 where
    # the hardware does that fast (oneDNN on a CPU with AMX or AVX512-BF16; TF32 on CUDA) — mixed
    # precision, as CLIP trains. Parameters, optimiser and validation stay float32. torch's
    # setting is process-wide while a step runs, so the public app keeps the default.
    matmul_precision: str = "highest"
    # Tuning's first settings of a trained method differ only in a loss term's weight or in weight
    # decay: they can train as one stacked model (one set of kernels for all of them, the same
    # numbers up to float rounding; gera.train.train_stacked). "auto" stacks on CUDA, where a
    # step's cost is launching its small kernels; on a CPU the arithmetic is the cost, and
    # stacking saves nothing (scripts/stacked_heads_cpu.py). "always" / "never" force it.
    stack_fits: str = "auto"

    def __post_init__(self):
        """Checked when built, so a bad value is one clear message, not a failure mid-run."""
        problems = [f"{name} must be {rule} (got {getattr(self, name)!r})" for name, ok, rule in (
            ("alpha", self.alpha >= 0, "≥ 0 (0 = contrastive only)"),
            ("k", self.k >= 1, "≥ 1"), ("k_pool", self.k_pool >= 1, "≥ 1"),
            ("kernel", self.kernel in KERNELS, f"one of {', '.join(KERNELS)}"),
            ("divergence", self.divergence in DIVERGENCES, f"one of {', '.join(DIVERGENCES)}"),
            ("geo_batch", self.geo_batch >= 1, "≥ 1"),
            ("eps_a", self.eps_a >= 0, "≥ 0 (0 = from the pool)"),
            ("eps_b", self.eps_b >= 0, "≥ 0 (0 = from the pool)"),
            ("head", self.head in HEADS, f"one of {', '.join(HEADS)}"),
            ("dim", self.dim >= 1, "≥ 1"), ("hidden", self.hidden >= 1, "≥ 1"),
            ("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, "≥ 0"),
            ("temperature", self.temperature > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"), ("max_steps", self.max_steps >= 1, "≥ 1"),
            ("eval_every", self.eval_every >= 1, "≥ 1"), ("patience", self.patience >= 1, "≥ 1"),
            ("cpu_threads", self.cpu_threads >= 1, "≥ 1"),
            ("matmul_precision", self.matmul_precision in MATMUL_PRECISIONS,
             f"one of {', '.join(MATMUL_PRECISIONS)}"),
            ("stack_fits", self.stack_fits in STACK_FITS, f"one of {', '.join(STACK_FITS)}"))
            if not ok]
        if problems:
            raise GeraError("Training options: " + "; ".join(problems) + ".")


def _all_methods() -> tuple[str, ...]:
    from gera.methods import DEFAULT_METHODS  # the registry fills as gera.methods is imported

    return DEFAULT_METHODS


@dataclass
class CompareSettings:
    """What ``compare`` runs.

    ``grid_size``: the tuning budget, fits per method, the same number for every method, spent
    on each method's search (``gera.tuning``; 1 = its defaults only; 0 = no search at all: the
    trained methods use ``train`` exactly as given and the training-free ones their defaults —
    for ablations).
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
    grid_size: int = 6
    train: TrainConfig = field(default_factory=TrainConfig)
    neighbourhood_k: int = 10
    # Nested pools (pool ablations): use only the first n of the split's unpaired pool, so a
    # smaller pool is a subset of a larger one and the other modality's pool is untouched.
    pool_subset_a: Optional[int] = None
    pool_subset_b: Optional[int] = None
    # Fix GeRA's ε per seed on the pairs ∪ the first n unpaired points of each pool (a subset
    # every nested pool shares), instead of each pool's own.
    eps_reference: Optional[int] = None
