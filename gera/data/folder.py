"""``folder:<path>``: the user's own pairs, image–caption or audio–transcript.

Images: ``captions.csv``, a UTF-8 CSV with a header row and the columns ``image`` (a path relative
to the folder) and ``caption``, optionally ``label`` (a class name, enabling zero-shot evaluation).
Speech: ``transcripts.csv`` with the columns ``audio`` (wav/flac/mp3/ogg, at most 30 s) and
``transcript``, optionally ``label``. One row per pair; a file may appear in several rows.
``open_folder`` picks the kind by which CSV the folder holds.

The folder may be an upload from anyone, so every path in the CSV must resolve (links followed)
to a file inside the folder; anything else is refused with one message, "outside the dataset
folder", whether or not it exists, so the CSV cannot be used to learn which files the server has.
Files are opened only through ``gera.images`` and ``gera.audio``, which refuse bombs unread.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from gera.audio import BadAudio, load_audio
from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.data.common import (PHOTO_TEMPLATES, check_budget, index_array, n_val_pairs,
                              pairs_array, prompts_for, text_key)
from gera.data.options import DecimalNumber, WholeNumber
from gera.errors import GeraError
from gera.images import BadImage, check_image, open_image

CSV_NAME = "captions.csv"
AUDIO_CSV_NAME = "transcripts.csv"
MIN_PAIRS = 5
# Bounds on what a CSV may ask for, whatever the zip's size: rows are read into memory and each
# distinct file is opened once.
MAX_CSV_BYTES = 20 * 2**20
MAX_ROWS = 100_000
_SHOWN_PROBLEMS = 8
# Zero-shot prompts for spoken labels (the same as the spoken-words task's).
SPEECH_TEMPLATES = ("{}", "the word {}", "someone saying {}")
OUTSIDE = "outside the dataset folder"


@dataclass
class _Rows:
    """What validation keeps: distinct images, distinct captions, and the pairs between them."""

    image_paths: list[Path] = field(default_factory=list)  # per A item, resolved
    image_names: list[str] = field(default_factory=list)  # per A item, as the CSV names it
    image_keys: list[str] = field(default_factory=list)
    image_labels: list[Optional[str]] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)  # per B item
    pairs: set[tuple[int, int]] = field(default_factory=set)


def inside(root: Path, rel: str) -> Optional[Path]:
    """``root / rel`` resolved (links followed) if that lies inside ``root`` (itself resolved),
    else None: absolute paths, ``..`` and links pointing out all land outside."""
    try:
        path = (root / rel).resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a link loop
        return None
    return path if path.is_relative_to(root) else None


def _file_key(path: Path) -> str:
    """``"file:" + sha1(bytes)``, read a block at a time."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "file:" + digest.hexdigest()


def _image_key(path: Path) -> tuple[Optional[str], Optional[str]]:
    """``(file key, None)`` for an image ``open_image`` accepts, else ``(None, why)``. Checks
    headers and structure without decoding pixels: cheap, though a truncated JPEG passes
    (loading reports those)."""
    if not path.is_file():
        return None, "not found"
    try:
        check_image(path)
    except BadImage as err:
        return None, err.why
    return _file_key(path), None


def _audio_key(path: Path) -> tuple[Optional[str], Optional[str]]:
    """``(file key, None)`` for a usable clip, else ``(None, why)``. Decodes the clip (at most
    30 s of it): silence only shows there, and it must fail up front."""
    if not path.is_file():
        return None, "not found"
    try:
        load_audio(path)
    except BadAudio as err:
        return None, err.why
    return _file_key(path), None


def _load_image(path: Path, name: str) -> object:
    return open_image(path, f"Image '{name}' of the folder dataset")


def _load_audio(path: Path, name: str) -> object:
    return load_audio(path, f"Audio file '{name}' of the folder dataset")


@dataclass(frozen=True)
class Layout:
    """One kind of folder dataset: its CSV, column names, modality, and how files are checked
    (``key``: path → (item key, None) or (None, why)) and loaded (``load``: (path, the name the
    CSV gives it) → item)."""

    csv_name: str
    media: str  # the file column, also the noun in messages: "image" | "audio"
    text: str  # the text column: "caption" | "transcript"
    modality: str
    key: Callable[[Path], tuple[Optional[str], Optional[str]]]
    load: Callable[[Path, str], object]
    files_ok: str  # what a good file is, for the fix message
    templates: tuple[str, ...]

    @property
    def fix(self) -> str:
        return (f"Fix: {self.csv_name} must be a UTF-8 CSV with the header `{self.media},"
                f"{self.text}` (optionally `,label`), one row per pair, {self.media} paths "
                f"relative to the folder, a non-empty {self.text} on every row, and "
                f"{self.media} files that {self.files_ok}.")


IMAGES = Layout(CSV_NAME, "image", "caption", "image", _image_key, _load_image,
                "lie inside the folder and are PNG, JPEG, WebP, GIF or BMP images of at most 40 "
                "megapixels", tuple(PHOTO_TEMPLATES))
AUDIO = Layout(AUDIO_CSV_NAME, "audio", "transcript", "speech", _audio_key, _load_audio,
               "lie inside the folder, decode (wav, flac, mp3 or ogg), are mono or stereo, hold "
               "sound and last at most 30 s", SPEECH_TEMPLATES)


def _named(root: Path) -> str:
    """How messages name a dataset folder: by its name, not its place on the server (an upload
    lives in a temp folder a visitor should not learn about)."""
    return f"folder dataset '{root.name}'"


def _problem_error(what: str, problems: list[str], layout: Layout) -> GeraError:
    shown = "\n".join(f"  - {p}" for p in problems[:_SHOWN_PROBLEMS])
    more = (f"\n  … and {len(problems) - _SHOWN_PROBLEMS} more"
            if len(problems) > _SHOWN_PROBLEMS else "")
    return GeraError(f"{what} has {len(problems)} problem(s):\n{shown}{more}\n{layout.fix}")


def _read_table(root: Path, layout: Layout) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows of the layout's CSV; structural problems raise."""
    csv_path = root / layout.csv_name
    media, column = layout.media, layout.text
    if not root.is_dir():
        raise GeraError(f"The {_named(root)} does not exist or is not a folder. Give the path "
                        f"of a folder that holds {CSV_NAME} and the images (or "
                        f"{AUDIO_CSV_NAME} and the audio files).")
    if not csv_path.is_file():
        other = (f" For speech, put a {AUDIO_CSV_NAME} (`audio,transcript`) there instead."
                 if layout is IMAGES else "")
        raise GeraError(f"{layout.csv_name} is missing from the {_named(root)}. Put a "
                        f"{layout.csv_name} in the folder with the header `{media},{column}` "
                        f"(optionally `,label`) and one row per {media}–{column} pair.{other}")
    if inside(root, layout.csv_name) is None:  # a link to a file elsewhere
        raise GeraError(f"{layout.csv_name} in the {_named(root)} is a link to a file {OUTSIDE}. "
                        "Put the CSV file itself in the folder.")
    size = csv_path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise GeraError(f"{layout.csv_name} is {size / 2**20:.0f} MB; at most "
                        f"{MAX_CSV_BYTES // 2**20} MB ({MAX_ROWS} rows) are read.")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise GeraError(f"{layout.csv_name} is not UTF-8 text ({err.reason} at byte {err.start}). "
                        "Save it as UTF-8 CSV.") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        rows = []
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
                if len(rows) > MAX_ROWS:
                    raise GeraError(f"{layout.csv_name} has more than {MAX_ROWS} rows; split the "
                                    "data into smaller folders.")
    except csv.Error as err:
        raise GeraError(f"{layout.csv_name} is not valid CSV (line {reader.line_num}: {err}). Quote "
                        f"{column}s that contain commas, quotes or line breaks with double "
                        "quotes.") from None
    missing = [c for c in (media, column) if c not in header]
    if missing:
        raise GeraError(f"{layout.csv_name} lacks the column(s) {', '.join(missing)} (header found: "
                        f"{','.join(header) or 'none'}). The first row must name the columns, "
                        f"e.g. `{media},{column}` or `{media},{column},label`.")
    return header, rows


def check_paths(root: str | Path, what: Optional[str] = None) -> None:
    """Raise one ``GeraError`` listing the CSV rows whose file is outside the folder or missing:
    the cheap part of ``validate`` (no file is opened), so an upload can be refused before it is
    kept. ``what`` names the folder in the message (default: "The folder dataset '<name>'")."""
    root = Path(root).resolve()
    layout = layout_of(root)
    header, rows = _read_table(root, layout)
    column = header.index(layout.media)
    problems = []
    for line, row in rows:
        rel = row[column].strip() if len(row) == len(header) else ""
        if not rel:
            continue  # malformed rows are validate's to report
        path = inside(root, rel)
        if path is None or not path.is_file():
            why = OUTSIDE if path is None else "not found"
            problems.append(f"line {line}: {layout.media} '{rel}' is {why}")
    if problems:
        raise _problem_error(what or f"The {_named(root)}", problems, layout)


def validate(root: Path, layout: Layout = IMAGES) -> _Rows:
    """Read and check the whole folder; raise one ``GeraError`` listing every problem found."""
    root = Path(root).resolve()
    header, rows = _read_table(root, layout)
    media, text = layout.media, layout.text
    col = {name: header.index(name) for name in (media, text, "label") if name in header}
    problems: list[str] = []
    out = _Rows()
    a_of_key: dict[str, int] = {}
    key_of_path: dict[str, tuple[Optional[str], Optional[str]]] = {}
    b_of_caption: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, the header has {len(header)}")
            continue
        rel, caption = row[col[media]].strip(), row[col[text]].strip()
        label = row[col["label"]].strip() if "label" in col else None
        if not caption:
            problems.append(f"line {line}: empty {text}")
        if label == "":
            problems.append(f"line {line}: empty label (the label column is optional; if "
                            "present, every row needs one)")
        if not rel:
            problems.append(f"line {line}: empty {media} path")
            continue
        path = inside(root, rel)
        # Keyed by the file itself, not by how a row spells it: "a.wav", "./a.wav", "././a.wav"
        # are one decode, not one each.
        seen_as = str(path) if path is not None else "\0outside:" + rel
        if seen_as not in key_of_path:
            # Outside first, before anything touches the file: the same answer whether it exists.
            key_of_path[seen_as] = (None, OUTSIDE) if path is None else layout.key(path)
        key, why = key_of_path[seen_as]
        if key is None:
            problems.append(f"line {line}: {media} '{rel}' is {why}")
            continue
        if not caption or label == "":
            continue
        if key not in a_of_key:
            a_of_key[key] = len(out.image_keys)
            out.image_paths.append(path)
            out.image_names.append(rel)
            out.image_keys.append(key)
            out.image_labels.append(label)
        a = a_of_key[key]
        if out.image_labels[a] != label:
            problems.append(f"line {line}: {media} '{rel}' has label '{label}' here and "
                            f"'{out.image_labels[a]}' on another row")
        if caption not in b_of_caption:
            b_of_caption[caption] = len(out.captions)
            out.captions.append(caption)
        out.pairs.add((a, b_of_caption[caption]))
    if "label" in col and not problems and len(set(out.image_labels)) < 2:
        problems.append("the label column has a single class; zero-shot needs at least two "
                        "(drop the column to evaluate by retrieval only)")
    if problems:
        raise _problem_error(f"The {_named(root)}", problems, layout)
    if len(out.pairs) < MIN_PAIRS:
        raise GeraError(f"The {_named(root)} has {len(out.pairs)} usable pair(s); it needs "
                        f"at least {MIN_PAIRS}. Add more rows to {layout.csv_name}.")
    return out


class FolderTask(Task):
    """Task ``folder:<path>``.

    A items: distinct images (by content: the same file bytes twice are one item) — or audio
    clips with ``layout=AUDIO``; everything said here of images and captions holds for clips and
    transcripts alike. B items: distinct captions. Splits work on whole images, so an image with
    several captions never sits on both sides of a split.

    Fixed per task (``seed``): the test images, the first ``test_fraction`` of a seeded permutation
    of the images; all their pairs are ``test_pairs``. Per split seed: validation images, then
    training images, are taken from a permutation of the rest until their pairs reach the budget
    (an image's surplus captions are dropped); of the images left, half (or ``unpaired_a``) give
    unpaired images, the others give unpaired captions — never captions any pair or unpaired
    image has.

    Parameters
    ----------
    path : the folder holding ``captions.csv`` (``transcripts.csv`` for ``layout=AUDIO``).
    test_fraction : share of the images held out for testing.
    seed : task-level seed of the test hold-out.
    templates : zero-shot prompt templates (used when the CSV has a ``label`` column; default
        the layout's: photo templates for images, spoken-word templates for audio).
    layout : ``IMAGES`` (default) or ``AUDIO``.
    """

    # Not templates (str.format strings).
    public_options = {"test_fraction": DecimalNumber(0.1, 0.5), "seed": WholeNumber(0, 9999)}

    def __init__(self, path: str | Path, test_fraction: float = 0.2, seed: int = 0,
                 templates: Optional[Sequence[str]] = None, layout: Layout = IMAGES):
        if not 0.0 < test_fraction < 1.0:
            raise GeraError(f"test_fraction={test_fraction} is invalid: use a value in (0, 1), "
                            "e.g. 0.2.")
        root = Path(path).expanduser().resolve()
        rows = validate(root, layout)
        self.root, self.layout = root, layout
        self.name = f"folder:{root}"
        self.templates = list(layout.templates if templates is None else templates)
        self.image_paths = rows.image_paths
        self.image_names = rows.image_names
        self.captions = rows.captions
        self.pairs = np.array(sorted(rows.pairs), dtype=np.int64)
        self.a = ItemSet(layout.modality, rows.image_keys, self._load_images)
        self.b = ItemSet("text", [text_key(c) for c in rows.captions], self._load_captions)
        if rows.image_labels[0] is not None:
            self.class_names = sorted(set(rows.image_labels))
            class_of = {c: i for i, c in enumerate(self.class_names)}
            self.labels_a = np.array([class_of[lab] for lab in rows.image_labels], dtype=np.int64)
            self.val_metric = "zero_shot"
        else:
            self.val_metric = "retrieval"

        n_images = len(rows.image_keys)
        order = np.random.default_rng(seed).permutation(n_images)
        n_test = min(max(1, int(round(test_fraction * n_images))), n_images - 2)
        self.test_images = np.sort(order[:n_test])
        self.pool_images = np.sort(order[n_test:])
        is_test = np.isin(self.pairs[:, 0], self.test_images)
        self.test_pairs = self.pairs[is_test]
        # self.pairs is sorted by image, so each image's rows are one contiguous slice.
        self._row_start = np.searchsorted(self.pairs[:, 0], np.arange(n_images), side="left")
        self._row_end = np.searchsorted(self.pairs[:, 0], np.arange(n_images), side="right")

    def _load_images(self, indices: Sequence[int]) -> list:
        return [self.layout.load(self.image_paths[i], self.image_names[i]) for i in indices]

    def _load_captions(self, indices: Sequence[int]) -> list:
        return [self.captions[i] for i in indices]

    def describe(self, side, indices):
        if side == "b":
            return super().describe(side, indices)
        # an item's first caption (rows are sorted by item)
        first = dict(zip(self.pairs[::-1, 0].tolist(), self.pairs[::-1, 1].tolist()))
        return [self.captions[first[int(i)]] for i in indices]

    def max_budget(self) -> int:
        return len(self.pairs) - len(self.test_pairs)

    def _zero_shot(self, images: np.ndarray) -> Optional[ZeroShot]:
        if self.labels_a is None or len(images) == 0:
            return None
        return ZeroShot(list(self.class_names), prompts_for(self.class_names, self.templates),
                        index_array(images), self.labels_a[images])

    def _take(self, images: Sequence[int], start: int, n: int) -> tuple[np.ndarray, int]:
        """Pairs of ``images[start:]``, whole images at a time, trimmed to ``n``; and where the
        next unused image is."""
        taken, count, i = [], 0, start
        while count < n:
            if i == len(images):
                raise GeraError(
                    f"{self.name} runs out of images before reaching this budget: images keep "
                    "all their captions on one side of a split, so a few captions are dropped "
                    "at the train/validation boundary. Choose a slightly smaller budget.")
            a = int(images[i])
            rows = self.pairs[self._row_start[a]:self._row_end[a]][:n - count]
            taken.append(rows)
            count += len(rows)
            i += 1
        return (np.concatenate(taken) if taken else pairs_array([], [])), i

    def split(self, budget: int, seed: int, unpaired_a: Optional[int] = None,
              unpaired_b: Optional[int] = None, val_fraction: float = 0.2) -> Split:
        """Seeded split; see the class docstring."""
        check_budget(self.name, budget, self.max_budget())
        rng = np.random.default_rng(seed)
        images = rng.permutation(self.pool_images)
        n_val = n_val_pairs(budget, val_fraction)
        val, next_image = self._take(images, 0, n_val)
        train, next_image = self._take(images, next_image, budget - n_val)
        rest = images[next_image:]

        if unpaired_a is not None and not 0 <= unpaired_a <= len(rest):
            raise GeraError(f"{self.name} has {len(rest)} images left for the unpaired pools at "
                            f"budget {budget}; asked for unpaired_a={unpaired_a}. Ask for at most "
                            f"{len(rest)}, or a smaller budget.")
        size_a = len(rest) // 2 if unpaired_a is None else unpaired_a
        pool_a, caption_images = rest[:size_a], rest[size_a:]
        # Paired images' dropped surplus captions count as used too: no hidden pairs in pool B.
        taken_images = np.concatenate([images[:next_image], pool_a, self.test_images])
        used = self.pairs[np.isin(self.pairs[:, 0], taken_images), 1]
        free = self.pairs[np.isin(self.pairs[:, 0], caption_images), 1]
        free = np.setdiff1d(free, used)  # sorted and unique
        if unpaired_b is not None and not 0 <= unpaired_b <= len(free):
            raise GeraError(f"{self.name} has {len(free)} unused captions left for the unpaired "
                            f"text pool at this budget; asked for unpaired_b={unpaired_b}. Ask for "
                            f"at most {len(free)}, or a smaller budget / unpaired_a.")
        pool_b = rng.permutation(free)[:len(free) if unpaired_b is None else unpaired_b]
        return Split(
            train_pairs=train.astype(np.int64),
            val_pairs=val.astype(np.int64),
            unpaired_a=index_array(pool_a),
            unpaired_b=index_array(pool_b),
            test_pairs=self.test_pairs.copy(),
            zero_shot=self._zero_shot(self.test_images),
            val_zero_shot=self._zero_shot(np.unique(val[:, 0])),
            info={"task": self.name, "budget": budget, "seed": seed, "n_train": len(train),
                  "n_val": len(val), "n_unpaired_a": len(pool_a), "n_unpaired_b": len(pool_b),
                  "n_test_pairs": len(self.test_pairs), "n_zero_shot":
                      len(self.test_images) if self.labels_a is not None else 0,
                  "note": "test images are fixed per task (seed), not per split seed"},
        )


def layout_of(root: Path) -> Layout:
    """``AUDIO`` if the folder holds ``transcripts.csv`` (and no ``captions.csv``), else
    ``IMAGES``."""
    speech = (root / AUDIO_CSV_NAME).is_file() and not (root / CSV_NAME).is_file()
    return AUDIO if speech else IMAGES


def open_folder(path: str | Path, test_fraction: float = 0.2, seed: int = 0,
                templates: Optional[Sequence[str]] = None) -> FolderTask:
    """``FolderTask`` of the folder at ``path``: speech if it holds ``transcripts.csv`` (and no
    ``captions.csv``), else images. Parameters as for ``FolderTask``."""
    root = Path(path).expanduser().resolve()
    return FolderTask(root, test_fraction, seed, templates, layout_of(root))
