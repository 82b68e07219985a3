"""Where GeRA keeps things on disk: one place, so every module (and every test) agrees.

Each location can be set from the environment. The defaults sit side by side under
``~/.cache/gera``; moving the embedding cache (``GERA_CACHE_DIR``) moves the model and speech
folders with it unless they are set themselves, so a test that pins ``GERA_MODELS_DIR`` keeps
the assembled Whisper model (145 MB) while giving every module a private embedding cache.

A leaf module: it imports nothing from ``gera``, so anything may import it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from stat import S_ISREG


def _from_env(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def embeddings_root() -> Path:
    """The embedding cache: ``$GERA_CACHE_DIR``, else ``~/.cache/gera/embeddings``."""
    return _from_env("GERA_CACHE_DIR") or Path.home() / ".cache" / "gera" / "embeddings"


def models_root() -> Path:
    """Model files assembled on first use (whisper_base): ``$GERA_MODELS_DIR``, else
    ``models/`` beside the embedding cache."""
    return _from_env("GERA_MODELS_DIR") or embeddings_root().parent / "models"


def speech_root() -> Path:
    """Synthesised speech (spoken-words): ``$GERA_SPEECH_DIR``, else ``speech/`` beside the
    embedding cache."""
    return _from_env("GERA_SPEECH_DIR") or embeddings_root().parent / "speech"


def uploads_root() -> Path:
    """Unpacked dataset uploads (the app's .zip of pairs): ``$GERA_UPLOADS_DIR``, else
    ``gera-uploads/`` in the system temp folder (uploads are disposable)."""
    return _from_env("GERA_UPLOADS_DIR") or Path(tempfile.gettempdir()) / "gera-uploads"


def sessions_root() -> Path:
    """Each app visitor's files while their session lasts (unpacked uploads, runs, embeddings
    of their own data, thumbnails): ``$GERA_SESSIONS_DIR``, else ``gera-sessions/`` in the
    system temp folder."""
    return _from_env("GERA_SESSIONS_DIR") or Path(tempfile.gettempdir()) / "gera-sessions"


def file_stamp(path: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, None where there is none: what says it was rewritten."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if S_ISREG(stat.st_mode) else None
