"""A training job from the form: one ``compare`` per chosen budget (a sweep when several), then
the user's model set (the last budget's alignments) and downloadable checkpoints.

Runs on a ``BackgroundJob`` thread; everything it produces goes into the user's ``Session``.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from gera.checkpoint import checkpoint_stem, save_result_alignments
from gera.cache import EmbeddingCache
from gera.data import get_task, parse_public_task_options, parse_task_options
from gera.encoders import check_allowed
from gera.errors import GeraError
from gera.experiment import compare
from gera.io import atomic_write
from gera.methods import METHODS, method_class
from gera.report import fmt_params
from gera.results import CompareResult, EmbedProgress, Evaluated, FitStarted, TrainStep
from gera.settings import CompareSettings, TrainConfig
from gera.ui.config import EXAMPLE_FOLDER, AppConfig
from gera.ui.errors import without_server_paths
from gera.ui.form import FOLDER, TRAIN_FIELDS, UPLOAD, TrainForm
from gera.ui.limits import Limits
from gera.ui.models import ModelSet, build_model_set
from gera.ui.uploads import unpack_pairs_zip

BUILTIN_TASKS = {"image": [("emoji — scenes ↔ instance-level captions", "emoji"),
                           ("fashion-mnist — clothes ↔ class captions", "fashion-mnist"),
                           ("example folder — 30 shapes ↔ captions", f"folder:{EXAMPLE_FOLDER}")],
                 "speech": [("spoken-words — synthetic speech ↔ text, tested on real speech",
                             "spoken-words")]}


def task_choices(pair: str, allow_folders: bool) -> list[tuple[str, str]]:
    extra = [("my pairs — upload a .zip", UPLOAD)]
    if allow_folders:
        extra.append(("my pairs — a folder on this machine", FOLDER))
    return BUILTIN_TASKS[pair] + extra


def _whole(value, name: str) -> int:
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise GeraError(f"{name} must be a whole number (got {text[:20]!r}).")
    return int(text)


def _check_size(form: TrainForm, budgets: Sequence[int], methods: Sequence[str],
                limits: Limits) -> None:
    """Refuse a job bigger than this app allows before any work starts."""
    steps, seeds, grid = int(form.max_steps), int(form.seeds), int(form.grid_size)
    if limits.max_steps is not None and steps > limits.max_steps:
        raise GeraError(f"At most {limits.max_steps} training steps per fit here (asked for "
                        f"{steps}).")
    # A method's fit may run several trainings (pseudo-pairs' rounds): the limit counts them.
    per_seed = sum(method_class(m).fit_cost for m in methods)
    fits = len(budgets) * seeds * per_seed * max(grid, 1)
    if limits.max_fits is not None and fits > limits.max_fits:
        raise GeraError(f"This job asks for {fits} fits (budgets × seeds × methods' trainings × "
                        f"tuning grid: {len(budgets)} × {seeds} × {per_seed} × {max(grid, 1)}); at most "
                        f"{limits.max_fits} per job here. Tick fewer of them.")


def _pool(text: Optional[str], name: str) -> Optional[int]:
    text = (text or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise GeraError(f"{name} must be a whole number ≥ 0, or blank for the task's default "
                        f"(got {text!r}).")
    return int(text)


def resolve_task(form: TrainForm, allow_folders: bool, uploads: Optional[Path] = None) -> str:
    """The task name ``compare`` gets; unpacks an uploaded zip of pairs (under ``uploads``, the
    visitor's own folder). Only the form's own choices are accepted: a typed
    ``folder:/anything`` is not a task a visitor can pick."""
    if form.task == UPLOAD:
        if not form.upload:
            raise GeraError("Upload a .zip of pairs first (a folder with captions.csv and the "
                            "images, or transcripts.csv and the audio).")
        return "folder:" + str(unpack_pairs_zip(form.upload, uploads))
    if form.task == FOLDER:
        if not allow_folders:
            raise GeraError("Reading folders on the server is switched off here; upload a .zip "
                            "of pairs instead.")
        if not form.folder.strip():
            raise GeraError("Type the path of a folder that holds captions.csv (or "
                            "transcripts.csv) and its files.")
        return "folder:" + form.folder.strip()
    builtin = [value for choices in BUILTIN_TASKS.values() for _, value in choices]
    if form.task not in builtin:
        raise GeraError(f"Unknown task {form.task!r}; choose one of the form's tasks.")
    return form.task


def settings_for(form: TrainForm, task_name: str,
                 config: Optional[AppConfig] = None) -> list[CompareSettings]:
    """One ``CompareSettings`` per budget, smallest first; refuses what cannot run before any
    work starts (no method, no budget, a budget beyond the task's data, an option, encoder or
    size a public app does not allow)."""
    config = config or AppConfig()
    methods = [m for m in METHODS if m in form.methods]
    if not methods:
        raise GeraError("Tick at least one method to train.")
    if not form.budgets:
        raise GeraError("Tick at least one paired budget N.")
    budgets = sorted({_whole(b, "A paired budget") for b in form.budgets})
    if config.public:
        options = parse_public_task_options(task_name, form.task_options)
    else:
        options = parse_task_options([p.strip() for p in form.task_options.split(",") if p.strip()])
    encoders = [form.encoder_a or None, form.encoder_b or None]
    if config.allowed_encoders is not None:
        encoders = [check_allowed(e, config.allowed_encoders) if e else None for e in encoders]
    _check_size(form, budgets, methods, config.limits)
    task = get_task(task_name, **options)
    if budgets[-1] > task.max_budget():
        raise GeraError(f"Paired budget {budgets[-1]} is beyond the data: task '{task_name}' "
                        f"serves at most {task.max_budget()} pairs. Untick the larger budgets.")
    kinds = {f.name: type(f.default) for f in fields(TrainConfig)}
    train = replace(TrainConfig(), **{f: kinds[f](getattr(form, f)) for f in TRAIN_FIELDS})
    base = CompareSettings(task=task_name, task_options=options, seeds=tuple(range(int(form.seeds))),
                           methods=tuple(methods), encoder_a=encoders[0], encoder_b=encoders[1],
                           unpaired_a=_pool(form.unpaired_a, "Unpaired A pool"),
                           unpaired_b=_pool(form.unpaired_b, "Unpaired B pool"),
                           grid_size=int(form.grid_size), train=train)
    return [replace(base, budget=b) for b in budgets]


@dataclass(frozen=True)
class PreparingGallery:
    """The job is aligning the run's gallery for the other tabs."""


@dataclass
class ProgressTracker:
    """Turns the library's progress events into a fraction done and one line of status."""

    settings: Sequence[CompareSettings] = ()  # known once the job is planned
    fits_done: int = 0
    within_fit: float = 0.0
    text: str = "Loading the task, the encoders and the cached embeddings…"
    live: dict = field(default_factory=dict)  # "method params" → history rows, first seed
    _budget: Optional[int] = None

    @property
    def fits_total(self) -> int:
        return sum(len(s.seeds) * len(s.methods) for s in self.settings)

    def _fits_before(self, budget: int) -> int:
        """Fits of the sweep's budgets that run before ``budget``."""
        return sum(len(s.seeds) * len(s.methods) for s in self.settings if s.budget < budget)

    def _where(self, budget: Optional[int]) -> str:
        return f"N = {budget}: " if len(self.settings) > 1 and budget is not None else ""

    def update(self, event) -> None:
        if isinstance(event, JobPlanned):
            self.settings = event.settings
        elif isinstance(event, EmbedProgress):
            kind = "A" if event.side == "a" else "B"
            self.text = (f"{self._where(self._budget)}Embedding {kind} items {event.done}/"
                         f"{event.total} (each item once, ever: the cache keeps them)")
        elif isinstance(event, FitStarted):
            if event.budget != self._budget:  # the next budget of a sweep: fresh curves
                self._budget, self.live = event.budget, {}
            self.fits_done, self.within_fit = self._fits_before(event.budget) + event.index, 0.0
            how = ("its kNN graphs, then training steps" if method_class(event.method).trained
                   else "closed form")
            self.text = (f"{self._where(event.budget)}Fitting {event.method} (seed {event.seed}, "
                         f"fit {event.index + 1}/{event.total}): {how}…")
        elif isinstance(event, TrainStep):
            params = fmt_params(event.params) if event.params else ""
            row = event.row
            val = f", validation {row['val']:.3f}" if "val" in row else ""
            self.text = (f"{self._where(self._budget)}Training {event.method} (seed {event.seed}"
                         f"{', ' + params if params else ''}): step {row['step']}, "
                         f"loss {row['loss']:.3f}{val}")
            current = next(s for s in self.settings if s.budget == self._budget)
            self.within_fit = min(0.95, row["step"] / max(current.train.max_steps, 1))
            if event.seed == current.seeds[0]:
                self.live.setdefault(f"{event.method} {params}".strip(), []).append(row)
        elif isinstance(event, Evaluated):
            self.fits_done = self._fits_before(event.budget) + event.index + 1
            self.within_fit = 0.0
            self.text = (f"{self._where(event.budget)}Evaluating {event.method} (seed "
                         f"{event.seed}) on the test data")
        elif isinstance(event, PreparingGallery):
            self.text = "Preparing your model for the Neighbourhoods and Retrieval tabs…"

    @property
    def fraction(self) -> float:
        return min(1.0, (self.fits_done + self.within_fit) / max(self.fits_total, 1))


@dataclass(frozen=True)
class Session:
    """What one user's last training run left for the other tabs (kept in their gr.State)."""

    results: list[CompareResult]  # one per budget; the last one's alignments are the models
    models: ModelSet
    downloads: list[str]

    @property
    def histories(self) -> dict[str, list]:
        """Method → training history of the kept alignment (empty for closed-form methods)."""
        return {m: list(a.history) for m, a in self.results[-1].alignments.items()}


@dataclass(frozen=True)
class JobPlanned:
    """The form passed every check: these comparisons will run."""

    settings: Sequence[CompareSettings]


def _checkpoint_files(result: CompareResult, settings: CompareSettings, folder: Path) -> list[str]:
    """The run's downloads; what they say of the task names no folder of the server."""
    folder.mkdir(parents=True, exist_ok=True)
    label = without_server_paths(settings.task)
    paths = [str(p) for p in save_result_alignments(result, settings, folder, label)]
    results_path = folder / f"{checkpoint_stem(settings.task, settings.budget)}-results.json"
    text = without_server_paths(json.dumps(result.to_json(), indent=2))
    atomic_write(results_path, lambda f: f.write(text.encode()))
    return paths + [str(results_path)]


def run_training(form: TrainForm, config: AppConfig, folder: Path,
                 report: Callable[[object], None], should_stop: Callable[[], bool]) -> Session:
    """The whole job, from the form to the visitor's session: checks, unzipping, the
    comparisons, the gallery. Everything it writes goes under ``folder`` (the visitor's)."""
    task_name = resolve_task(form, config.allow_server_folders, folder / "uploads")
    settings_list = settings_for(form, task_name, config)
    report(JobPlanned(settings_list))
    # The visitor's own data is embedded into their folder, not into the shared cache.
    cache = (EmbeddingCache(folder / "cache") if form.task == UPLOAD
             else EmbeddingCache(max_bytes=config.limits.cache_max_bytes))
    results = [compare(s, cache=cache, progress=report, should_stop=should_stop)
               for s in settings_list]
    last, settings = results[-1], settings_list[-1]
    report(PreparingGallery())
    task = get_task(settings.task, **settings.task_options)
    split = task.split(settings.budget, settings.seeds[0], settings.unpaired_a, settings.unpaired_b)
    means = {m: {k: s.mean for k, s in rec.metrics.items()} for m, rec in last.methods.items()}
    title = f"Your run · {task.name.split('/')[-1]} (N = {settings.budget})"
    run_folder = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    models = build_model_set("session", title, settings.task, settings.task_options, split,
                             last.config["encoder_a"], last.config["encoder_b"],
                             last.alignments, means, config.gallery_limit, progress=report,
                             cache=cache, thumbnails=run_folder / "thumbnails",
                             budget=settings.budget)
    downloads = _checkpoint_files(last, settings, run_folder / "checkpoints")
    for earlier in folder.glob("run-*"):  # this run replaces the session's last one
        if earlier != run_folder:
            shutil.rmtree(earlier, ignore_errors=True)
    return Session(results, models, downloads)
