"""Shared fixtures: a private embedding cache per test module, and a launched app."""
from pathlib import Path

import pytest

from gera.ui import AppConfig, build_app, launch_kwargs

# Assembled model files (the 145 MB Whisper model) are the same for every test: keep them in the
# user's models folder rather than re-joining and hashing them under each private cache.
MODELS_DIR = Path.home() / ".cache" / "gera" / "models"


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """An empty embedding cache for one module: later tests reuse what the first embedded, as
    users do; nothing leaks into the user's own cache."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("gera")
    mp.setenv("GERA_CACHE_DIR", str(folder / "cache"))
    mp.setenv("GERA_MODELS_DIR", str(MODELS_DIR))
    yield folder / "cache"
    mp.undo()


def serve_app(tmp_path_factory, config: AppConfig):
    """Launch the app on loopback with a private embedding cache; yield its URL, then stop it.
    For module-scoped fixtures: ``yield from serve_app(tmp_path_factory, AppConfig(...))``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GERA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("GERA_MODELS_DIR", str(MODELS_DIR))
    demo = build_app(config, warm_up=False)
    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                                  **launch_kwargs())
    yield local_url
    demo.close()
    mp.undo()
