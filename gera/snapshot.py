"""An experiment's embeddings in one file, to run it where neither the encoders' weights nor the
data are installed (a rented GPU machine):

    python -m gera snapshot --task emoji --budgets 10,100 --seeds 5 --out emoji.npz
    python -m gera sweep --task snapshot:emoji.npz --budgets 10,100 --seeds 5 --device cuda

A snapshot holds exactly what its splits need: each (budget, seed, pool sizes) split of the task,
the rows of every item those splits use, the class prompts' rows, the task's labels, and each
encoder's identity. ``get_task("snapshot:<file>")`` opens it as a task whose encoders answer from
those rows (``SnapshotTask``); asking for anything else (another budget or seed, another encoder)
is a ``GeraError`` saying what the snapshot holds.

``dtype="float16"`` halves the file for a transfer limit. Its rows are then rounded, so its
encoders carry a cache key of their own: rounded rows never mix with exact ones in a cache, and a
run on it is a timing run whose numbers differ from the exact ones by that rounding. With the
default float32 the rows, and so every number of a run, are the exact ones.

Read with numpy alone (``allow_pickle=False``): a snapshot is data, never code.
"""
from __future__ import annotations

import copy
import json
import zipfile
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.encoders.base import Encoder
from gera.errors import GeraError
from gera.io import atomic_write

PREFIX = "snapshot:"
FORMAT = "gera-snapshot-1"
DTYPES = ("float32", "float16")
_SPLIT_ARRAYS = ("train_pairs", "val_pairs", "unpaired_a", "unpaired_b", "test_pairs")
_IDENTITY = ("name", "modality", "dim", "preprocessing", "version", "cache_key")


def split_key(budget: int, seed: int, unpaired_a: Optional[int], unpaired_b: Optional[int],
              val_fraction: float = 0.2) -> str:
    sizes = [None if n is None else int(n) for n in (unpaired_a, unpaired_b)]
    return json.dumps([int(budget), int(seed), *sizes, float(val_fraction)])


def save(path: Path, data, splits: dict[str, Split], dtype: str = "float32") -> int:
    """Write the snapshot of ``data`` (an ``EmbeddedTask`` whose every item of ``splits`` is
    embedded, class prompts included) for ``splits`` (``split_key`` → split); its size in bytes."""
    if dtype not in DTYPES:
        raise GeraError(f"A snapshot stores float32 or float16 rows, not {dtype!r}.")
    from gera.embedded import split_items

    task = data.task
    arrays: dict[str, np.ndarray] = {}
    meta_splits, prompt_texts, prompt_rows = [], {}, []
    for number, (key, split) in enumerate(splits.items()):
        for name in _SPLIT_ARRAYS:
            arrays[f"split{number}_{name}"] = np.asarray(getattr(split, name), np.int64)
        entry = {"key": key, "info": split.info}
        for field in ("zero_shot", "val_zero_shot"):
            zs = getattr(split, field)
            if zs is None:
                continue
            entry[field] = {"class_names": zs.class_names, "prompts": zs.prompts}
            arrays[f"split{number}_{field}_a_indices"] = np.asarray(zs.a_indices, np.int64)
            arrays[f"split{number}_{field}_labels"] = np.asarray(zs.labels, np.int64)
            rows = data.prompts(zs).reshape(-1, data.encoder_b.dim)
            for text, row in zip((p for prompts in zs.prompts for p in prompts), rows):
                if text not in prompt_texts:
                    prompt_texts[text] = len(prompt_rows)
                    prompt_rows.append(row)
        meta_splits.append(entry)
    used = [split_items(split) for split in splits.values()]
    a_index = np.unique(np.concatenate([a for a, _ in used])) if used else np.zeros(0, np.int64)
    b_index = np.unique(np.concatenate([b for _, b in used])) if used else np.zeros(0, np.int64)
    arrays.update(a_index=a_index, b_index=b_index, a_rows=data.a(a_index).astype(dtype),
                  b_rows=data.b(b_index).astype(dtype),
                  prompt_rows=np.asarray(prompt_rows, np.float32).reshape(
                      -1, data.encoder_b.dim).astype(dtype))
    if task.labels_a is not None:
        arrays["labels_a"] = np.asarray(task.labels_a, np.int64)
    meta = {"format": FORMAT, "task": task.name, "dtype": dtype, "splits": meta_splits,
            "prompt_texts": list(prompt_texts), "val_metric": task.val_metric,
            "max_budget": task.max_budget(), "class_names": task.class_names,
            "default_unpaired": [task.default_unpaired_a, task.default_unpaired_b],
            "sides": {side: {"modality": getattr(task, side).modality,
                             "size": len(getattr(task, side)),
                             "keys": [getattr(task, side).keys[i] for i in index.tolist()],
                             "encoder": {f: getattr(encoder, f) for f in _IDENTITY}}
                      for side, index, encoder in (("a", a_index, data.encoder_a),
                                                   ("b", b_index, data.encoder_b))}}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_plain).encode(), np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path.stat().st_size


def _plain(value):
    """numpy values in a split's ``info`` as JSON ones."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


class SnapshotEncoder(Encoder):
    """One side's encoder of a snapshot: its rows by item index (the task's items) or by text
    (the class prompts), never a model."""

    def __init__(self, identity: dict, rows: dict, dtype: str, what: str):
        self.name, self.modality, self.dim = identity["name"], identity["modality"], identity["dim"]
        self.preprocessing, self.version = identity["preprocessing"], identity["version"]
        # Rounded rows must not land under the exact rows' key.
        self._cache_key = identity["cache_key"] + ("" if dtype == "float32" else f"|snapshot-{dtype}")
        self._rows, self._what = rows, what

    @property
    def cache_key(self) -> str:
        return self._cache_key

    def embed(self, items: Sequence, batch_size: int = 64, progress=None) -> np.ndarray:
        out = np.empty((len(items), self.dim), np.float32)
        for position, item in enumerate(items):
            row = self._rows.get(item)
            if row is None:
                what = f"prompt {item!r}" if isinstance(item, str) else f"item {item}"
                raise GeraError(f"{self._what} holds no {self.modality} row for {what}; make the "
                                "snapshot with every budget and seed you run.")
            out[position] = row
        if progress is not None:
            progress(len(items), len(items))
        return out


class SnapshotTask(Task):
    """A snapshot file as a task: its splits, its labels, and its own encoders."""

    def __init__(self, path: str):
        path = Path(path).expanduser()
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise GeraError(f"{path} is not a GeRA snapshot (format "
                                f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                                f"expected {FORMAT!r}).")
            self._open(path, meta, arrays)
        except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, zlib.error,
                zipfile.BadZipFile) as err:  # truncated, damaged or not ours
            raise GeraError(f"{path} is not a readable GeRA snapshot "
                            f"({type(err).__name__}: {err}).") from None

    def _open(self, path: Path, meta: dict, arrays: dict) -> None:
        self.name, self.source, self.val_metric = meta["task"], str(path), meta["val_metric"]
        self._max_budget = meta["max_budget"]
        self.default_unpaired_a, self.default_unpaired_b = meta["default_unpaired"]
        self.class_names = meta["class_names"]
        self.labels_a = arrays.get("labels_a")
        what = f"The snapshot {path.name} (task {self.name})"
        # In every split's info, so a result made from a snapshot says so in its config (float16
        # rows are rounded: its numbers agree with the task's within seed noise, not to the digit).
        origin = {"snapshot": path.name, "snapshot_dtype": meta["dtype"]}
        self._splits = {entry["key"]: self._split(number, entry, arrays, origin)
                        for number, entry in enumerate(meta["splits"])}
        encoders = {}
        for side in ("a", "b"):
            info, index = meta["sides"][side], arrays[f"{side}_index"]
            rows = dict(zip(index.tolist(), arrays[f"{side}_rows"].astype(np.float32)))
            if side == "b":
                rows.update(zip(meta["prompt_texts"], arrays["prompt_rows"].astype(np.float32)))
            keys = [f"{self.name}:not-in-snapshot:{side}:{i}" for i in range(info["size"])]
            for i, key in zip(index.tolist(), info["keys"]):
                keys[i] = key
            setattr(self, side, ItemSet(info["modality"], keys, lambda idx: [int(i) for i in idx]))
            encoders[side] = SnapshotEncoder(info["encoder"], rows, meta["dtype"], what)
        self._encoders = (encoders["a"], encoders["b"])
        self._what = what

    @staticmethod
    def _split(number: int, entry: dict, arrays: dict, origin: dict) -> Split:
        def zero_shot(field: str) -> Optional[ZeroShot]:
            if field not in entry:
                return None
            return ZeroShot(entry[field]["class_names"], entry[field]["prompts"],
                            arrays[f"split{number}_{field}_a_indices"],
                            arrays[f"split{number}_{field}_labels"])
        return Split(*(arrays[f"split{number}_{name}"] for name in _SPLIT_ARRAYS),
                     zero_shot=zero_shot("zero_shot"), val_zero_shot=zero_shot("val_zero_shot"),
                     info={**entry["info"], **origin})

    def max_budget(self) -> int:
        return self._max_budget

    def split(self, budget, seed, unpaired_a=None, unpaired_b=None, val_fraction=0.2) -> Split:
        key = split_key(budget, seed, unpaired_a, unpaired_b, val_fraction)
        split = self._splits.get(key)
        if split is None:
            held = ", ".join(sorted(self._splits, key=lambda k: json.loads(k)[:2]))
            raise GeraError(f"{self._what} holds no split for budget {budget}, seed {seed} with "
                            f"pools {unpaired_a}/{unpaired_b} and validation fraction "
                            f"{val_fraction}; it holds [budget, seed, pool A, pool B, validation "
                            f"fraction] {held}.")
        return copy.deepcopy(split)  # as a real task's: the caller's to change

    def own_encoders(self, encoder_a: Optional[str], encoder_b: Optional[str]):
        from gera.encoders import _canonical

        for asked, encoder in zip((encoder_a, encoder_b), self._encoders):
            if asked is None or asked == encoder.name:
                continue
            try:
                same = _canonical(asked.strip(), encoder.modality)[0] == encoder.name
            except (GeraError, KeyError):
                same = False
            if not same:
                raise GeraError(f"{self._what} was embedded with {encoder.name}, not {asked}.")
        return self._encoders


def make(settings_list: Sequence, path: Path, dtype: str = "float32", cache=None,
         progress=None) -> tuple[int, int]:
    """Embed (or fetch from the cache) everything the comparisons ``settings_list`` (one task,
    one pair of encoders: a sweep's budgets) use, and save it as a snapshot at ``path``;
    (splits, bytes) written."""
    from gera.embedded import EmbeddedTask, split_items

    first = settings_list[0]
    if any((s.task, s.task_options, s.encoder_a, s.encoder_b)
           != (first.task, first.task_options, first.encoder_a, first.encoder_b)
           for s in settings_list):
        raise GeraError("A snapshot holds one task with one pair of encoders.")
    data = EmbeddedTask.open(first.task, first.task_options, first.encoder_a, first.encoder_b,
                             cache)
    splits = {split_key(s.budget, seed, s.unpaired_a, s.unpaired_b):
              data.task.split(s.budget, seed, s.unpaired_a, s.unpaired_b)
              for s in settings_list for seed in dict.fromkeys(s.seeds)}
    used = [split_items(split) for split in splits.values()]
    data.ensure(np.concatenate([a for a, _ in used]), np.concatenate([b for _, b in used]),
                progress)
    return len(splits), save(path, data, splits, dtype)
