"""The whole app: header, the four tabs, the shared session state, queueing, warm-up."""
from __future__ import annotations

import functools
import os
import threading
import time
from typing import Optional

import gradio as gr

from gera.ui import about, neighbourhoods_tab, retrieval_tab, train_tab
from gera.ui.config import AppConfig
from gera.ui.device import device_label
from gera.ui.models import ShippedModels, shared_thumbnails
from gera.ui.projection import compile_umap
from gera.ui.limits import Guards
from gera.ui.workspace import end_session, sweep_sessions

# Queries are cheap: several users' queries run at once. Training and projections have their
# own, smaller limits (train_tab, neighbourhoods_tab).
QUERY_CONCURRENCY = 4
# After every event Gradio's queue rebuilds a pandas table of up to its last 10,000 events for its
# monitoring page (off here): work that grows with the server's age, on a thread that holds the
# GIL while queries wait. Once every this many events instead (an operator's own setting wins).
ANALYTICS_EVERY = 1000


def _warm_up(shipped: ShippedModels) -> None:
    """After start-up, off the request path: load the encoders and galleries the shipped
    checkpoints need, and compile UMAP's numba code, so first queries are fast."""
    shipped.warm()
    compile_umap()


def _sweep_every(period_s: float, ttl_s: float) -> None:
    """Delete the folders of sessions that ended without the server hearing of it (an API
    client, a crashed browser) once their time to live is over."""
    while True:
        sweep_sessions(ttl_s)
        time.sleep(period_s)


def _end_session(request: gr.Request) -> None:
    """A visitor who leaves takes their files with them (uploads, runs, thumbnails)."""
    end_session(request.session_hash)


@functools.cache
def _serve_shared_thumbnails_directly() -> None:
    """The shipped galleries' images are served from where they are rendered. Otherwise Gradio
    checks, hashes and copies each of a text query's 16 result images into its cache on every
    request, on the server's event loop: the largest part of a query after the model work. They
    are thumbnails of the bundled data, written once and never changed; a visitor's own run keeps
    going through the cache. (Process-wide in Gradio, hence once.)"""
    gr.set_static_paths([shared_thumbnails()])


def build_app(config: Optional[AppConfig] = None, warm_up: bool = True) -> gr.Blocks:
    """The Blocks, queued. Launch it with ``launch(**theme.launch_kwargs())``."""
    config = config or AppConfig.from_env()
    shipped = ShippedModels(config.checkpoints, config.gallery_limit)
    guards = Guards.of(config.limits)
    # Gradio's own copies of uploads and results: swept every 10 minutes once older than a
    # session may live.
    ttl = int(config.limits.session_ttl_seconds)
    with gr.Blocks(title="GeRA Studio", delete_cache=(600, ttl)) as demo:
        gr.Markdown("# GeRA Studio\nAlign two frozen encoders from a few pairs and many unpaired "
                    "examples — and see what happens to each modality's neighbourhoods.",
                    elem_classes="gera-header")
        gr.Markdown(f"Device: **{device_label()}**", elem_classes="gera-device")
        # This user's last training run (training.Session). It holds a gallery's embeddings
        # (tens of MB): dropped after the session's time to live, so idle sessions free memory.
        session = gr.State(None, time_to_live=ttl)
        with gr.Tabs():
            with gr.Tab("Train & compare"):
                train = train_tab.build(config)
            with gr.Tab("Neighbourhoods") as nbhd_tab:
                nbhd = neighbourhoods_tab.build(shipped, session, nbhd_tab, guards.queries,
                                              config.results)
            with gr.Tab("Retrieval playground"):
                retr = retrieval_tab.build(shipped, session, guards.queries, config.results)
            with gr.Tab("About"):
                about.build(config.results, shipped.groups.values())
        shipped_choices = {m: shipped.choices(m) for m in (None, "image", "speech")}
        train_tab.wire(train, config, guards, session, shipped_choices,
                       [(nbhd.source, None), (retr.image_source, "image"),
                        (retr.speech_source, "speech")])
        demo.unload(_end_session)
    _serve_shared_thumbnails_directly()
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))
    demo.queue(default_concurrency_limit=QUERY_CONCURRENCY, max_size=config.queue_size)
    if warm_up:
        threading.Thread(target=_warm_up, args=(shipped,), daemon=True).start()
    threading.Thread(target=_sweep_every, args=(600, config.limits.session_ttl_seconds),
                     daemon=True, name="gera-session-sweep").start()
    return demo
