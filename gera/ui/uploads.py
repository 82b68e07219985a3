"""Uploaded datasets: a .zip of pairs, unpacked safely into a folder that ``folder:<path>`` reads.

The zip is only ever unpacked, never executed or unpickled. Member names that could escape the
folder (absolute paths, ``..``), links, and archives that unpack to more than the limits below are
refused with a message that says what to fix.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from gera.data.folder import AUDIO_CSV_NAME, CSV_NAME
from gera.errors import GeraError

MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 2 * 1024 ** 3
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "gera-uploads"
_FIX = (f"Zip a folder that holds {CSV_NAME} (columns image,caption[,label]) and the images, or "
        f"{AUDIO_CSV_NAME} (audio,transcript[,label]) and the clips, with paths in the CSV relative "
        "to it.")


def _safe_name(info: zipfile.ZipInfo) -> PurePosixPath:
    name = PurePosixPath(info.filename.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or ":" in name.parts[0]:
        raise GeraError(f"The zip holds a file outside its own folder ({info.filename!r}); "
                        f"refusing to unpack it. {_FIX}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise GeraError(f"The zip holds a link ({info.filename!r}); links are not unpacked. "
                        f"Zip the files themselves. {_FIX}")
    return name


def _unpack(zf: zipfile.ZipFile, dest: Path) -> None:
    members = [m for m in zf.infolist() if not m.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise GeraError(f"The zip holds {len(members)} files; at most {MAX_MEMBERS} are unpacked.")
    budget = MAX_UNPACKED_BYTES
    for info in members:
        target = dest.joinpath(*_safe_name(info).parts)
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


def unpack_pairs_zip(path: str | Path, root: Path = UPLOAD_ROOT) -> Path:
    """Unpack the uploaded zip at ``path`` (once per distinct content) and return the folder that
    holds its CSV, ready for ``get_task("folder:" + folder)``."""
    path = Path(path)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    dest = root / digest
    if not dest.is_dir():
        staging = root / f".unpacking-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            with zipfile.ZipFile(path) as zf:
                _unpack(zf, staging)
            os.replace(staging, dest)  # atomic: a half-unpacked upload is never used
        except zipfile.BadZipFile:
            raise GeraError(f"{path.name} is not a readable .zip file. {_FIX}") from None
        except OSError as err:
            if dest.is_dir():  # another session unpacked the same upload first
                return _dataset_root(dest)
            raise GeraError(f"Could not unpack {path.name} ({err.strerror or err}).") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _dataset_root(dest)
