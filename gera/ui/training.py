"""A training job from the form: one ``compare`` per chosen budget (a sweep when several), then
the user's model set (the last budget's alignments) and downloadable checkpoints.

Runs on a ``BackgroundJob`` thread; everything it produces goes into the user's ``Session``.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from gera.checkpoint import save_alignment
from gera.data import parse_task_options
from gera.data import get_task
from gera.errors import GeraError
from gera.experiment import CompareSettings, compare, to_json
from gera.io import atomic_write
from gera.methods import METHODS, method_class
from gera.train import TrainConfig
from gera.ui.models import ModelSet, build_model_set
from gera.ui.uploads import unpack_pairs_zip

UPLOAD, FOLDER = "upload", "folder"  # task choices that name no built-in task


@dataclass(frozen=True)
class TrainForm:
    """The training form's values, in the order of the UI's inputs (and of the /train API)."""

    pair: str
    task: str  # a task name, or UPLOAD / FOLDER
    upload: Optional[str]
    folder: str
    encoder_a: str
    encoder_b: str
    budgets: Sequence
    unpaired_a: str  # blank = the task's default pool
    unpaired_b: str
    methods: Sequence[str]
    alpha: float
    k: float
    kernel: str
    max_steps: float
    seeds: float
    grid_size: float
    task_options: str


def _pool(text: Optional[str], name: str) -> Optional[int]:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise GeraError(f"{name} must be a whole number ≥ 0, or blank for the task's default "
                        f"(got {text!r}).")
    return int(text)


def resolve_task(form: TrainForm, allow_folders: bool) -> str:
    """The task name ``compare`` gets; unpacks an uploaded zip of pairs."""
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
    train = TrainConfig(alpha=float(form.alpha), k=int(form.k), kernel=form.kernel,
                        max_steps=int(form.max_steps))
    base = CompareSettings(task=task_name, task_options=options, seeds=tuple(range(int(form.seeds))),
                           methods=tuple(methods), encoder_a=form.encoder_a or None,
                           encoder_b=form.encoder_b or None,
                           unpaired_a=_pool(form.unpaired_a, "Unpaired A pool"),
                           unpaired_b=_pool(form.unpaired_b, "Unpaired B pool"),
                           grid_size=int(form.grid_size), train=train)
    return [replace(base, budget=b) for b in budgets]


@dataclass
class ProgressTracker:
    """Turns the library's progress events into a fraction done and one line of status.

    The library reports embedding batches, validation checks and evaluations; a method's first
    seconds (its kNN graphs, its first steps) are reported as "fitting" until its first check.
    """

    settings: Sequence[CompareSettings]
    fits_done: int = 0
    within_fit: float = 0.0
    text: str = "Loading the task, the encoders and the cached embeddings…"
    live: dict = field(default_factory=dict)  # "method params" → history rows, first seed

    @property
    def fits_total(self) -> int:
        return sum(len(s.seeds) * len(s.methods) for s in self.settings)

    def _fit_label(self, settings: CompareSettings) -> str:
        index = self.fits_done % (len(settings.seeds) * len(settings.methods))
        method = settings.methods[index % len(settings.methods)]
        seed = settings.seeds[index // len(settings.methods)]
        how = ("its kNN graphs, then training steps" if method_class(method).trained
               else "closed form")
        return f"fitting {method} (seed {seed}): {how}…"

    def current(self) -> CompareSettings:
        per = [len(s.seeds) * len(s.methods) for s in self.settings]
        done = self.fits_done
        for settings, n in zip(self.settings, per):
            if done < n:
                return settings
            done -= n
        return self.settings[-1]

    def update(self, event: dict) -> None:
        stage = event["stage"]
        settings = self.current()
        where = f"N = {settings.budget}: " if len(self.settings) > 1 else ""
        if stage == "embed":
            kind = "A" if event["side"] == "a" else "B"
            self.text = (f"{where}Embedding {kind} items {event['done']}/{event['total']} "
                         "(each item once, ever: the cache keeps them)")
            if event["side"] == "b" and event["done"] == event["total"]:
                label = self._fit_label(settings)
                self.text = where + label[0].upper() + label[1:]
        elif stage == "train":
            params = "/".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in event["params"].items())
            val = f", validation {event['val']:.3f}" if "val" in event else ""
            self.text = (f"{where}Training {event['method']} (seed {event['seed']}"
                         f"{', ' + params if params else ''}): step {event['step']}, "
                         f"loss {event['loss']:.3f}{val}")
            self.within_fit = min(0.95, event["step"] / max(settings.train.max_steps, 1))
            if event["seed"] == settings.seeds[0]:
                self.live.setdefault(f"{event['method']} {params}".strip(), []).append(event)
        elif stage == "evaluate":  # sent when a fit ends, before its test evaluation
            self.fits_done += 1
            self.within_fit = 0.0
            self.text = f"{where}Evaluating {event['method']} (seed {event['seed']}) on the test data"
            if self.fits_done < self.fits_total:
                following = self.current()
                if following is not settings:  # the next budget of a sweep: fresh curves
                    self.live = {}
                self.text += "; next: " + self._fit_label(following)
        elif stage == "gallery":
            self.text = "Preparing your model for the Neighbourhoods and Retrieval tabs…"

    @property
    def fraction(self) -> float:
        return min(1.0, (self.fits_done + self.within_fit) / max(self.fits_total, 1))


@dataclass(frozen=True)
class Session:
    """What one user's last training run left for the other tabs (kept in their gr.State)."""

    results: list[dict]  # JSON-ready compare results, one per budget
    histories: Mapping[str, list]  # method → training history of the kept alignment
    models: ModelSet
    downloads: list[str]


def _checkpoint_files(result: dict, settings: CompareSettings, task_name: str) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="gera-run-"))
    stem = f"folder-{Path(task_name).name}" if task_name.startswith("folder:") else task_name
    summary = to_json(result)
    paths = []
    for method, alignment in result["_alignments"].items():
        meta = {"task": settings.task, "task_options": settings.task_options,
                "budget": settings.budget, "method": method,
                "encoder_a": summary["config"]["encoder_a"],
                "encoder_b": summary["config"]["encoder_b"], "seed": settings.seeds[0],
                "chosen": summary["methods"][method]["chosen"][0],
                "metrics": {m: s["mean"] for m, s in summary["methods"][method]["metrics"].items()}}
        paths += [str(p) for p in save_alignment(alignment, folder / f"{stem}-{method}", meta)]
    results_path = folder / f"{stem}-N{settings.budget}-results.json"
    atomic_write(results_path, lambda f: f.write(json.dumps(summary, indent=2).encode()))
    return paths + [str(results_path)]


def run_training(settings_list: Sequence[CompareSettings], gallery_limit: int,
                 report: Callable[[dict], None], should_stop: Callable[[], bool]) -> Session:
    results = [compare(s, progress=report, should_stop=should_stop) for s in settings_list]
    last, settings = results[-1], settings_list[-1]
    report({"stage": "gallery"})
    task = get_task(settings.task, **settings.task_options)
    split = task.split(settings.budget, settings.seeds[0], settings.unpaired_a, settings.unpaired_b)
    means = {m: {k: s["mean"] for k, s in rec["metrics"].items()}
             for m, rec in last["methods"].items()}
    title = f"Your run · {task.name.split('/')[-1]} (N = {settings.budget})"
    models = build_model_set("session", title, settings.task, settings.task_options, split,
                             last["config"]["encoder_a"], last["config"]["encoder_b"],
                             last["_alignments"], means, gallery_limit, progress=report)
    return Session([to_json(r) for r in results], last["_histories"], models,
                   _checkpoint_files(last, settings, settings.task))
