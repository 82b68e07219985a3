"""Tasks (datasets) by name: ``get_task("fashion-mnist")``, ``get_task("emoji")``,
``get_task("spoken-words")``, ``get_task("folder:/path/to/pairs")``, and an experiment's
embeddings saved by ``python -m gera snapshot``: ``get_task("snapshot:/path/to/file.npz")``."""
from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
import json
from pathlib import Path
from typing import Callable

from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.data.emoji import Emoji
from gera.data.fashion_mnist import FashionMNIST
from gera.data.folder import AUDIO_CSV_NAME, CSV_NAME, FolderTask, open_folder
from gera.data.options import describe_options, parse_public_options
from gera.data.spoken_words import SpokenWords
from gera.errors import GeraError
from gera.paths import file_stamp

__all__ = ["ItemSet", "Split", "Task", "ZeroShot", "get_task", "list_tasks",
           "parse_public_task_options", "parse_task_options", "public_task_options_help"]

_BUILTIN: dict[str, Callable[..., Task]] = {
    "fashion-mnist": FashionMNIST,
    "emoji": Emoji,
    "spoken-words": SpokenWords,
}
FOLDER_PREFIX = "folder:"
SNAPSHOT_PREFIX = "snapshot:"
# Built tasks, most recently used last. Bounded: on a public app every upload is a new task, and
# a task holds its item lists (Fashion-MNIST: 70k images in memory).
_MEMO: "OrderedDict[tuple, Task]" = OrderedDict()
MEMO_SIZE = 8
_MEMO_LOCK = threading.Lock()


def list_tasks() -> list[str]:
    """The task names ``get_task`` accepts (``folder:<path>`` stands for any folder)."""
    return list(_BUILTIN) + [FOLDER_PREFIX + "<path>", SNAPSHOT_PREFIX + "<file>"]


def _memo_key(name: str, kwargs: dict) -> tuple:
    frozen = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    if name.startswith(SNAPSHOT_PREFIX):  # a rewritten file is a new task
        path = Path(name[len(SNAPSHOT_PREFIX):]).expanduser().resolve()
        return SNAPSHOT_PREFIX + str(path), frozen, file_stamp(path)
    if not name.startswith(FOLDER_PREFIX):
        return name, frozen
    root = Path(name[len(FOLDER_PREFIX):]).expanduser().resolve()
    # A rewritten captions.csv / transcripts.csv must be re-validated: their stamps are in the key.
    stamp = tuple(file_stamp(root / csv) for csv in (CSV_NAME, AUDIO_CSV_NAME))
    return FOLDER_PREFIX + str(root), frozen, stamp


def _build(name: str, factory: Callable[..., Task], *args, **kwargs) -> Task:
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as err:
        params = [p for p in inspect.signature(factory).parameters if p != "path"]
        raise GeraError(f"Task '{name}' does not take these arguments ({err}). It accepts: "
                        f"{', '.join(params)}.") from None
    return factory(*args, **kwargs)


def get_task(name: str, **kwargs) -> Task:
    """The task called ``name``, built with ``kwargs`` (see each task class for its parameters).

    Tasks are memoised per (name, kwargs), the last ``MEMO_SIZE`` used: parsing Fashion-MNIST or
    enumerating the emoji font happens once per process. Unknown names raise ``GeraError``
    listing the known ones.
    """
    key = _memo_key(name, kwargs)
    with _MEMO_LOCK:
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX):]
        if not path:
            raise GeraError("Task 'folder:' needs a path, e.g. 'folder:/data/my-pairs' (a "
                            f"folder holding {CSV_NAME} and the images, or {AUDIO_CSV_NAME} "
                            "and the audio files).")
        task = _build(name, open_folder, path, **kwargs)
    elif name.startswith(SNAPSHOT_PREFIX):
        from gera.snapshot import SnapshotTask

        if kwargs:
            raise GeraError("A snapshot task takes no options: they were fixed when it was made.")
        task = SnapshotTask(name[len(SNAPSHOT_PREFIX):])
    elif name in _BUILTIN:
        task = _build(name, _BUILTIN[name], **kwargs)
    else:
        raise GeraError(f"Unknown task '{name}'. Known tasks: {', '.join(list_tasks())}.")
    with _MEMO_LOCK:
        task = _MEMO.setdefault(key, task)  # two first callers at once keep one
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    return task


def parse_task_options(pairs: list[str]) -> dict:
    """``["n_test=2000", "engines=espeak"]`` → task constructor options (JSON values where they
    parse, plain strings otherwise), for ``get_task(name, **options)``.

    Full freedom (paths, templates), for the CLI; a public app uses
    ``parse_public_task_options``."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GeraError(f"Task option {pair!r} must look like KEY=VALUE, e.g. n_test=2000.")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value.strip()
    return options


def _public_options(task_name: str) -> dict:
    if task_name.startswith(FOLDER_PREFIX):
        return dict(FolderTask.public_options)
    if task_name in _BUILTIN:
        return dict(getattr(_BUILTIN[task_name], "public_options", {}))
    raise GeraError(f"Unknown task '{task_name}'. Known tasks: {', '.join(list_tasks())}.")


def _shown_name(task_name: str) -> str:
    """How messages name a task: a folder's path stays out of them (it may be an upload's
    place on the server)."""
    return FOLDER_PREFIX + "<path>" if task_name.startswith(FOLDER_PREFIX) else task_name


def parse_public_task_options(task_name: str, text: str) -> dict:
    """Options a visitor of a public app typed (``"n_test=2000, seed=3"``) → constructor
    options for ``get_task(task_name, **options)``.

    Only each task's ``public_options`` are accepted (small numbers within their ranges, fixed
    choices; never a path or a template); anything else raises one ``GeraError`` naming the
    allowed options and ranges. Blank text → ``{}``.
    """
    return parse_public_options(_shown_name(task_name), text, _public_options(task_name))


def public_task_options_help(task_name: str) -> str:
    """One sentence listing the options ``parse_public_task_options`` accepts for the task."""
    return describe_options(_shown_name(task_name), _public_options(task_name))
