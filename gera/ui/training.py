"""A training job from the form: one ``compare`` per chosen budget (a sweep when several), then
the user's model set (the last budget's alignments) and downloadable checkpoints.

Runs on a ``BackgroundJob`` thread; everything it produces goes into the user's ``Session``.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from gera.checkpoint import save_result_alignments
from gera.data import get_task, parse_task_options
from gera.errors import GeraError
from gera.experiment import compare
from gera.io import atomic_write
from gera.methods import METHODS, method_class
from gera.results import CompareResult, EmbedProgress, Evaluated, FitStarted, TrainStep
from gera.settings import CompareSettings, TrainConfig
from gera.ui.config import EXAMPLE_FOLDER
from gera.ui.form import FOLDER, TRAIN_FIELDS, UPLOAD, TrainForm
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


def _pool(text: Optional[str], name: str) -> Optional[int]:
    text = (text or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise GeraError(f"{name} must be a whole number ≥ 0, or blank for the task's default "
                        f"(got {text!r}).")
    return int(text)


def resolve_task(form: TrainForm, allow_folders: bool) -> str:
    """The task name ``compare`` gets; unpacks an uploaded zip of pairs. Only the form's own
    choices are accepted: a typed ``folder:/anything`` is not a task a visitor can pick."""
    if form.task == UPLOAD:
        if not form.upload:
            raise GeraError("Upload a .zip of pairs first (a folder with captions.csv and the "
                            "images, or transcripts.csv and the audio).")
        return "folder:" + str(unpack_pairs_zip(form.upload))
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


def settings_for(form: TrainForm, task_name: str) -> list[CompareSettings]:
    """One ``CompareSettings`` per budget, smallest first; refuses what cannot run before any
    work starts (no method, no budget, a budget beyond the task's data)."""
    methods = [m for m in METHODS if m in form.methods]
    if not methods:
        raise GeraError("Tick at least one method to train.")
    if not form.budgets:
        raise GeraError("Tick at least one paired budget N.")
    budgets = sorted({int(b) for b in form.budgets})
    options = parse_task_options([p.strip() for p in form.task_options.split(",") if p.strip()])
    task = get_task(task_name, **options)
    if budgets[-1] > task.max_budget():
        raise GeraError(f"Paired budget {budgets[-1]} is beyond the data: task '{task_name}' "
                        f"serves at most {task.max_budget()} pairs. Untick the larger budgets.")
    kinds = {f.name: type(f.default) for f in fields(TrainConfig)}
    train = replace(TrainConfig(), **{f: kinds[f](getattr(form, f)) for f in TRAIN_FIELDS})
    base = CompareSettings(task=task_name, task_options=options, seeds=tuple(range(int(form.seeds))),
                           methods=tuple(methods), encoder_a=form.encoder_a or None,
                           encoder_b=form.encoder_b or None,
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

    settings: Sequence[CompareSettings]
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
        if isinstance(event, EmbedProgress):
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
            params = "/".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in event.params.items())
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


def _checkpoint_files(result: CompareResult, settings: CompareSettings) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="gera-run-"))
    task_name = settings.task
    stem = f"folder-{Path(task_name).name}" if task_name.startswith("folder:") else task_name
    paths = [str(p) for p in save_result_alignments(result, settings, folder, stem)]
    results_path = folder / f"{stem}-N{settings.budget}-results.json"
    atomic_write(results_path, lambda f: f.write(json.dumps(result.to_json(), indent=2).encode()))
    return paths + [str(results_path)]


def run_training(settings_list: Sequence[CompareSettings], gallery_limit: int,
                 report: Callable[[object], None], should_stop: Callable[[], bool]) -> Session:
    results = [compare(s, progress=report, should_stop=should_stop) for s in settings_list]
    last, settings = results[-1], settings_list[-1]
    report(PreparingGallery())
    task = get_task(settings.task, **settings.task_options)
    split = task.split(settings.budget, settings.seeds[0], settings.unpaired_a, settings.unpaired_b)
    means = {m: {k: s.mean for k, s in rec.metrics.items()} for m, rec in last.methods.items()}
    title = f"Your run · {task.name.split('/')[-1]} (N = {settings.budget})"
    models = build_model_set("session", title, settings.task, settings.task_options, split,
                             last.config["encoder_a"], last.config["encoder_b"],
                             last.alignments, means, gallery_limit, progress=report)
    return Session(results, models, _checkpoint_files(last, settings))
