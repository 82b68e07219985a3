"""Shared fixtures: a private embedding cache per test module, and a launched app."""
import os

import pytest

from gera.paths import models_root
from gera.ui import AppConfig, build_app, launch_kwargs

# Pinned before any module points GERA_CACHE_DIR at a private folder: assembled models (the
# 145 MB whisper_base) then stay in one place instead of being rebuilt for every test module.
os.environ.setdefault("GERA_MODELS_DIR", str(models_root()))


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """An empty embedding cache for one module: later tests reuse what the first embedded, as
    users do; nothing leaks into the user's own cache."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("gera") / "cache"
    mp.setenv("GERA_CACHE_DIR", str(folder))
    yield folder
    mp.undo()


def serve_app(tmp_path_factory, config: AppConfig):
    """Launch the app on loopback with a private embedding cache; yield its URL, then stop it.
    For module-scoped fixtures: ``yield from serve_app(tmp_path_factory, AppConfig(...))``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GERA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    demo = build_app(config, warm_up=False)
    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                                  **launch_kwargs())
    yield local_url
    demo.close()
    mp.undo()
