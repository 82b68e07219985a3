"""Atomic file writes: a crash, a full disk or a cancelled job never leaves half a file."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(file)`` into a temp file beside ``path``, fsync, then rename it over ``path``.

    Any failure removes the temp file and re-raises; callers turn ``OSError`` into a message
    that names their folder.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}{path.suffix}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
