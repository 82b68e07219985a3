"""Shared fixtures: a private embedding cache per test module, and a launched app."""
import os

import pytest

from gera.paths import models_root
from gera.ui import AppConfig, build_app, launch_kwargs

# Pinned before any module points GERA_CACHE_DIR at a private folder: assembled models (the
# 145 MB whisper_base) then stay in one place instead of being rebuilt for every test module.
os.environ.setdefault("GERA_MODELS_DIR", str(models_root()))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """One embedding cache for the whole run, empty at its start: later tests reuse what earlier
    ones embedded, as users do, and nothing leaks into (or is read from) the user's own cache.
    So is every visitor's folder of the app."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("gera")
    mp.setenv("GERA_CACHE_DIR", str(folder / "cache"))
    mp.setenv("GERA_SESSIONS_DIR", str(folder / "sessions"))
    yield folder / "cache"
    mp.undo()


def serve_app(config: AppConfig):
    """Launch the app on loopback; yield its URL, then stop it. For module-scoped fixtures:
    ``yield from serve_app(AppConfig(...))``."""
    demo = build_app(config, warm_up=False)
    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                                  **launch_kwargs())
    yield local_url
    demo.close()
