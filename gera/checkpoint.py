"""Save and load any ``Alignment`` as ``<name>.safetensors`` + ``<name>.json``.

Tensors go to safetensors and everything else to JSON, so loading a checkpoint someone uploaded
never unpickles anything. Writes are atomic: a crash or a full disk leaves no half checkpoint.
Matrices may be stored as float16 (``save_alignment(..., float16=True)``: half the size; vectors
such as the standardisers' means stay float32); loading always gives float32.

A checkpoint's file stem names its task and budget (``checkpoint_stem``): ``emoji-N300-gera``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from gera import __version__
from gera.alignments import Alignment, alignment_class
from gera.errors import GeraError
from gera.io import atomic_write

if TYPE_CHECKING:
    from gera.results import CompareResult
    from gera.settings import CompareSettings

FORMAT = "gera-alignment/1"


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _stored_dtype(value: np.ndarray, float16: bool) -> type:
    """float16 for matrices when asked (the bulk of any checkpoint), float32 otherwise."""
    return np.float16 if float16 and np.ndim(value) >= 2 else np.float32


def save_alignment(alignment: Alignment, path: str | Path, meta: Optional[dict] = None,
                   float16: bool = False) -> tuple[Path, Path]:
    """Write the checkpoint; ``meta`` (encoders, task, metrics …) is stored in the JSON as is.
    ``float16``: store matrices in half precision (vectors stay float32)."""
    weights, config_path = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors, config = alignment.state()
    tensors = {k: np.ascontiguousarray(v, dtype=_stored_dtype(v, float16))
               for k, v in tensors.items()}
    doc = {"format": FORMAT, "gera_version": __version__, "kind": alignment.kind,
           "config": config, "meta": meta or {}}
    try:
        atomic_write(weights, lambda f: f.write(save(tensors)))
        atomic_write(config_path, lambda f: f.write(json.dumps(doc, indent=2).encode()))
    except OSError as err:
        raise GeraError(f"Could not write the checkpoint to {weights.parent} ({err.strerror or err}). "
                        "Free some disk space or choose another folder.") from err
    return weights, config_path


def load_alignment(path: str | Path) -> tuple[Alignment, dict]:
    """Load a checkpoint written by ``save_alignment``; returns ``(alignment, meta)``."""
    weights, config_path = _paths(path)
    for p in (weights, config_path):
        if not p.is_file():
            raise GeraError(f"Checkpoint file {p} is missing: a checkpoint is a .safetensors file "
                            "and a .json file with the same name.")
    try:
        doc = json.loads(config_path.read_text())
        tensors = {k: v.astype(np.float32, copy=False) for k, v in load_file(str(weights)).items()}
    except (ValueError, OSError, SafetensorError) as err:
        raise GeraError(f"Checkpoint {weights.with_suffix('')} is corrupt or not a GeRA checkpoint "
                        f"({err}).") from err
    cls = alignment_class(str(doc.get("kind")))
    if doc.get("format") != FORMAT or cls is None:
        raise GeraError(f"{config_path} is not a GeRA checkpoint (format {doc.get('format')!r}, "
                        f"kind {doc.get('kind')!r}).")
    try:
        alignment = cls.from_state(tensors, doc["config"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise GeraError(f"Checkpoint {weights.with_suffix('')} does not match its {doc['kind']!r} "
                        f"format (missing or misshapen {err}). Re-save it with this version.") from err
    return alignment, doc.get("meta", {})


def checkpoint_stem(task_name: str, budget: Optional[int] = None) -> str:
    """A file name for a task's checkpoints: the task's name (a folder task: its folder's
    name), in safe characters and of bounded length, then ``-N<budget>`` when given
    (``emoji-N300``). Loading never reads the name: task and budget come from the meta."""
    if task_name.startswith("folder:"):
        task_name = "folder-" + Path(task_name[len("folder:"):]).name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", task_name)[:60]
    return stem if budget is None else f"{stem}-N{int(budget)}"


def save_result_alignments(result: "CompareResult", settings: "CompareSettings", folder: Path,
                           task_label: Optional[str] = None, float16: bool = False) -> list[Path]:
    """Save a comparison's first-seed alignments as ``<folder>/<task>-N<budget>-<method>``, each
    with the meta that lets the app rebuild its gallery (task, options, budget, seed, encoders,
    metrics). ``task_label`` replaces the task's name in the meta (e.g. to keep a server path
    out); ``float16`` stores the matrices in half precision."""
    stem = checkpoint_stem(settings.task, settings.budget)
    paths = []
    for method, alignment in result.alignments.items():
        record = result.methods[method]
        meta = {"task": task_label or settings.task, "task_options": settings.task_options,
                "budget": settings.budget, "method": method,
                "encoder_a": result.config["encoder_a"], "encoder_b": result.config["encoder_b"],
                "seed": result.seeds[0], "chosen": record.chosen[0],
                "metrics": {m: s.mean for m, s in record.metrics.items()}}
        paths += save_alignment(alignment, Path(folder) / f"{stem}-{method}", meta, float16)
    return paths
