"""How the app names and colours a task's items: a text for hovers and galleries, a class for
colours. Tasks know different things about their items, so each rule names the task it serves;
any other task falls back to its labels, or to the item's position."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from gera.data.base import Task


def _is_folder(task: Task) -> bool:
    return task.name.startswith("folder:")


def _recording_row(task: Task, index: int) -> Optional[int]:
    """spoken-words: the real recording behind A item ``index``, or None for a synthetic clip
    (the synthetic grid of every text × voice comes first)."""
    row = index - len(task.entries) * len(task.voices)
    return row if row >= 0 else None


def describe(task: Task, side: str, indices: Sequence[int]) -> list[str]:
    """A short text per item: the text itself on the B side, what an image or clip shows on A."""
    indices = [int(i) for i in indices]
    if side == "b":
        return [str(t) for t in task.b.load(indices)]
    if task.name == "emoji":  # image i and caption i describe the same scene
        return [task.captions[i] for i in indices]
    if task.name == "spoken-words":
        out = []
        for i in indices:
            row = _recording_row(task, i)
            out.append(f"real: “{task.recordings[row].transcript}”" if row is not None
                       else f"synthetic: “{task.entries[i // len(task.voices)].text}”")
        return out
    if _is_folder(task):  # an image's first caption (rows are sorted by image)
        first = dict(zip(task.pairs[::-1, 0].tolist(), task.pairs[::-1, 1].tolist()))
        return [task.captions[first[i]] for i in indices]
    if task.labels_a is not None and task.class_names is not None:
        return [task.class_names[task.labels_a[i]] for i in indices]
    return [f"item {i}" for i in indices]


def classes(task: Task, side: str, indices: Sequence[int]) -> Optional[list[str]]:
    """A class per item to colour plots by, or None when the task has no natural one."""
    indices = np.asarray(indices, dtype=np.int64)
    if task.name == "emoji":  # both sides of item i describe spec i: its background is a class
        return [f"{task.specs[i].background} background" for i in indices]
    if task.name == "fashion-mnist" and side == "b":  # caption c·T + t: template t, class c
        return [task.class_names[i // len(task.templates)] for i in indices]
    if task.name == "spoken-words" and side == "a":
        rows = [_recording_row(task, int(i)) for i in indices]
        return [task.recordings[r].group or "other" if r is not None else "synthetic"
                for r in rows]
    if side == "a" and task.labels_a is not None and task.class_names is not None:
        return [task.class_names[task.labels_a[i]] for i in indices]
    return None
