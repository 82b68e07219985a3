"""Each visitor's files on the server: one folder per browser session, deleted when the session
ends (or, if the server never hears of its end, by a sweep after the session's time to live).

Everything a visitor's work writes goes in there: their unpacked upload, the embeddings of their
own data, their run's checkpoints and thumbnails. The shared embedding cache only ever holds the
bundled tasks' items.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gera.cache import forget
from gera.paths import sessions_root
from gera.ui.uploads import remove_upload, sweep_uploads


def _folder_of(session_hash: str | None) -> Path:
    """The session hash comes from the client, so the folder is named by a digest of it: no
    name a client sends can point elsewhere."""
    return sessions_root() / hashlib.sha256((session_hash or "no-session").encode()).hexdigest()[:32]


def session_folder(session_hash: str | None) -> Path:
    """The session's folder (created)."""
    folder = _folder_of(session_hash)
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # in use: the sweep's clock restarts
    return folder


def end_session(session_hash: str | None) -> None:
    """Delete everything the session left, and forget its embedding cache."""
    folder = _folder_of(session_hash)
    forget(folder)
    remove_upload(folder, root=sessions_root())


def sweep_sessions(max_age_s: float) -> list[Path]:
    """Delete the folders of sessions untouched for ``max_age_s`` seconds."""
    removed = sweep_uploads(sessions_root(), max_age_s)
    for folder in removed:
        forget(folder)
    return removed
