"""Uploaded datasets: a .zip of pairs, unpacked safely into a folder that ``folder:<path>`` reads.

The zip is only ever unpacked, never executed or unpickled. Member names that could escape the
folder (absolute paths, ``..``, empty names), links, and archives that unpack to more than the
limits below are refused with a message that says what to fix. So is a zip without a dataset
CSV, or whose CSV names files outside the folder or missing from it.

A refused upload leaves nothing on disk: it is unpacked into a staging folder that is renamed
into place only once these checks pass, and removed otherwise. Accepted uploads live under the
``root`` the caller names (the app: the visitor's session folder, ``gera.ui.workspace``, deleted
with the session; default ``gera.paths.uploads_root()``), one folder per distinct zip (by
content). ``remove_upload`` and ``sweep_uploads`` delete one, or all stale ones, under a root
without following links out of it. No Gradio here.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from gera.data.folder import AUDIO_CSV_NAME, CSV_NAME, check_paths
from gera.errors import GeraError
from gera.paths import uploads_root

MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 2 * 1024 ** 3
STAGING_PREFIX = ".unpacking-"
_FIX = (f"Zip a folder that holds {CSV_NAME} (columns image,caption[,label]) and the images, or "
        f"{AUDIO_CSV_NAME} (audio,transcript[,label]) and the clips, with paths in the CSV relative "
        "to it.")
# What zipfile raises for a damaged or unusual archive besides BadZipFile: unsupported
# compression, an encrypted member, truncated or corrupt compressed data.
_UNREADABLE_ZIP = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error,
                   ValueError)


def _safe_name(info: zipfile.ZipInfo) -> PurePosixPath:
    name = PurePosixPath(info.filename.replace("\\", "/"))
    if not name.parts:  # "" or "." names no file; zipfile itself trips over ""
        raise GeraError(f"The zip holds an entry with an empty name; refusing to unpack it. {_FIX}")
    if name.is_absolute() or ".." in name.parts or ":" in name.parts[0]:
        raise GeraError(f"The zip holds a file outside its own folder ({info.filename!r}); "
                        f"refusing to unpack it. {_FIX}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise GeraError(f"The zip holds a link ({info.filename!r}); links are not unpacked. "
                        f"Zip the files themselves. {_FIX}")
    return name


def _unpack(zf: zipfile.ZipFile, dest: Path) -> None:
    # The name is checked before zipfile's own is_dir(), which fails on an empty name.
    members = [(info, _safe_name(info)) for info in zf.infolist()]
    members = [(info, name) for info, name in members if not info.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise GeraError(f"The zip holds {len(members)} files; at most {MAX_MEMBERS} are unpacked.")
    budget = MAX_UNPACKED_BYTES
    for info, name in members:
        target = dest.joinpath(*name.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            # Count what is actually written: a zip's declared sizes can lie.
            while chunk := src.read(1 << 20):
                budget -= len(chunk)
                if budget < 0:
                    raise GeraError(f"The zip unpacks to more than "
                                    f"{MAX_UNPACKED_BYTES // 1024 ** 3} GiB; upload a smaller one.")
                out.write(chunk)


def _dataset_root(folder: Path) -> Path:
    """The shallowest folder inside that holds one of the dataset CSVs."""
    found = sorted((p for name in (CSV_NAME, AUDIO_CSV_NAME) for p in folder.rglob(name)),
                   key=lambda p: len(p.parts))
    if not found:
        raise GeraError(f"The zip holds no {CSV_NAME} or {AUDIO_CSV_NAME}. {_FIX}")
    return found[0].parent


def _digest(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def unpack_pairs_zip(path: str | Path, root: str | Path | None = None) -> Path:
    """Unpack the uploaded zip at ``path`` (once per distinct content) under ``root`` (default
    ``uploads_root()``) and return the folder that holds its CSV, ready for
    ``get_task("folder:" + folder)``.

    Refused (one ``GeraError``, nothing left on disk): a damaged zip, unsafe or empty member
    names, links, more than ``MAX_MEMBERS`` files or ``MAX_UNPACKED_BYTES``, no dataset CSV,
    CSV paths outside the folder or missing. Decoding the files is left to ``get_task``.
    """
    path = Path(path)
    root = Path(root) if root is not None else uploads_root()
    try:
        dest = root / _digest(path)
    except OSError as err:
        raise GeraError(f"Could not read the upload {path.name} ({err.strerror or err}).") from None
    if dest.is_dir():
        os.utime(dest)  # used again: the sweep's clock restarts
        return _dataset_root(dest)
    staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    try:
        staging.mkdir(parents=True)
        with zipfile.ZipFile(path) as zf:
            _unpack(zf, staging)
        folder = _dataset_root(staging)
        check_paths(folder, "The zip")
        os.replace(staging, dest)  # atomic: a half-unpacked upload is never used
        os.utime(dest)
    except _UNREADABLE_ZIP:
        raise GeraError(f"{path.name} is not a readable .zip file. {_FIX}") from None
    except OSError as err:
        if dest.is_dir():  # another session unpacked the same upload first
            return _dataset_root(dest)
        raise GeraError(f"Could not unpack {path.name} ({err.strerror or err}).") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest / folder.relative_to(staging)


def _delete(path: Path) -> None:
    """Delete an entry of the uploads folder without following links out of it."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_upload(folder: str | Path, root: str | Path | None = None) -> bool:
    """Delete the unpacked upload holding ``folder`` (a path ``unpack_pairs_zip`` returned), e.g.
    when its dataset is refused or its session ends. Only inside ``root`` (default
    ``uploads_root()``): any other path is left alone and False returned."""
    base = (Path(root) if root is not None else uploads_root()).resolve()
    try:
        target = Path(folder).resolve()
    except (OSError, RuntimeError):
        return False
    if target == base or not target.is_relative_to(base):
        return False
    top = base / target.relative_to(base).parts[0]
    existed = top.exists() or top.is_symlink()
    _delete(top)
    return existed


def sweep_uploads(root: str | Path | None = None, max_age_s: float = 24 * 3600) -> list[Path]:
    """Delete the unpacked uploads under ``root`` (default ``uploads_root()``) last used more
    than ``max_age_s`` seconds ago (default a day), and staging folders left by a crash; the
    deleted paths. For the app to call now and then. A job still reading an upload older than
    that would lose it, so pick a TTL well beyond the longest job (reuse restarts the clock)."""
    base = Path(root) if root is not None else uploads_root()
    cutoff = time.time() - max_age_s
    removed = []
    try:
        entries = list(base.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        _delete(entry)
        removed.append(entry)
    return removed
