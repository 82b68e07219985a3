"""``python -m gera.ui.bench``: the app's performance figures (printed, nothing asserted).

1. cold start: ``python app.py`` in a fresh process until its page is served;
2. text → image query latency: the query function alone, and through the HTTP API;
3. UMAP of 3,000 points (the Neighbourhoods tab's projection, faiss kNN graph included);
4. the default training job (the form's initial values) end to end through the HTTP API.

Run it with a warm embedding cache (``scripts/make_checkpoints.sh`` warms what 2–4 need) and the
shipped checkpoints in place. The targets (issue 4, 2 CPU cores): cold start < 20 s, query
< 200 ms, UMAP < 20 s, default job < 60 s.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict

import numpy as np

from gera.methods import featured, featured_twin
from gera.ui.config import REPO_ROOT, AppConfig
from gera.ui.device import device_label

QUERIES = ["a large cat face in the centre, on a blue background", "a pizza", "a red apple",
           "a small dog face on the left and a large tree on the right, on a white background",
           "a rocket at the top", "a yellow background", "two hearts", "a smiling face"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, **env_vars: str) -> tuple[subprocess.Popen, float]:
    """Start ``app.py`` (with ``env_vars`` set); return the process and the seconds until ``/``
    answered."""
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           **env_vars}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)


def query_latency_in_process(gallery_limit: int) -> dict:
    from gera.ui import retrieval
    from gera.ui.models import ShippedModels

    t0 = time.perf_counter()
    models = ShippedModels(AppConfig().checkpoints, gallery_limit).get("shipped:emoji")
    build_s = time.perf_counter() - t0
    retrieval.text_to_images(models, featured(), "warm-up", 8)
    times = []
    for query in QUERIES * 3:
        t = time.perf_counter()
        retrieval.text_to_images(models, featured(), query, 8)
        times.append(time.perf_counter() - t)
    return {"gallery_images": len(models.gallery_a.indices), "build_s": build_s,
            "median_ms": 1000 * statistics.median(times), "max_ms": 1000 * max(times)}


def wait_until_warm(client) -> float:
    """The server's start-up warm-up (galleries, encoders, numba) competes for the CPU: wait for
    it by asking for what needs all of it, a projection. Returns the seconds waited."""
    t = time.perf_counter()
    client.predict(model="shipped:emoji", method=featured(), modality="a", points=100, k=10,
                   colour_by="class", api_name="/neighbourhoods")
    return time.perf_counter() - t


def query_latency_http(client) -> dict:
    client.predict(model="shipped:emoji", baseline=featured_twin(), text="warm-up", k=8,
                   api_name="/text_to_images")
    times = []
    for query in QUERIES:
        t = time.perf_counter()
        client.predict(model="shipped:emoji", baseline=featured_twin(), text=query, k=8,
                       api_name="/text_to_images")
        times.append(time.perf_counter() - t)
    return {"median_ms": 1000 * statistics.median(times), "max_ms": 1000 * max(times)}


def umap_3000() -> dict:
    """3,000 emoji images (held-out, then pool items of the shipped split), aligned by the
    shipped GeRA checkpoint, projected twice: the first call pays numba's start-up."""
    from gera.checkpoint import load_alignment
    from gera.embedded import EmbeddedTask
    from gera.ui.projection import umap_2d

    alignment, meta = load_alignment(AppConfig().checkpoints / "emoji-gera")
    data = EmbeddedTask.open("emoji", {}, meta["encoder_a"], meta["encoder_b"])
    task = data.task
    split = task.split(meta["budget"], meta["seed"])
    items = np.unique(np.concatenate([split.test_pairs[:, 0], split.zero_shot.a_indices,
                                      split.unpaired_a]))[:3000]
    data.ensure(items, np.zeros(0, np.int64))
    aligned = alignment.embed_a(data.a(items))
    out = {"points": len(items)}
    for name, x in (("first_s", aligned), ("again_other_points_s", aligned[::-1].copy())):
        t = time.perf_counter()
        umap_2d(x)
        out[name] = time.perf_counter() - t
    return out


def default_job_http(client) -> dict:
    d = AppConfig().defaults
    form = {**asdict(d), "budgets": list(d.budgets), "methods": list(d.methods)}
    t = time.perf_counter()
    status = client.predict(**form, api_name="/train")[0]
    return {"wall_s": time.perf_counter() - t, "status": status,
            "job": f"{d.task}, N = {d.budgets}, {d.seeds} seed(s), grid {d.grid_size}, "
                   f"methods {', '.join(d.methods)}"}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gera.ui.bench", description=__doc__)
    parser.add_argument("--load", action="store_true", help="the load benchmark (gera.ui.load)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.load:
        return load_benchmark(args.clients, args.seconds)
    figures()


def load_benchmark(clients: int, seconds: float) -> None:
    from gradio_client import Client

    from gera.ui import load

    port = _free_port()
    # Public mode, as on a Space; all visitors come from 127.0.0.1 here, so the per-visitor
    # rate limits (which would count them as one visitor) are lifted for the measurement.
    proc, cold_s = start_server(port, GERA_PUBLIC="1", GERA_QUERIES_PER_MINUTE="none",
                                GERA_TRAINS_PER_HOUR="none")
    try:
        print(f"cold start {cold_s:.1f} s; warm-up "
              f"{wait_until_warm(Client(f'http://127.0.0.1:{port}/', verbose=False)):.1f} s")
        load.run(port, proc.pid, clients, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def figures() -> None:
    from gradio_client import Client

    print(f"device: {device_label()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"{os.cpu_count()} CPU cores")
    port = _free_port()
    proc, cold_s = start_server(port)
    try:
        print(f"cold start to served page (python app.py → HTTP 200 on /): {cold_s:.1f} s")
        # The browser fetches result images itself, in parallel: time the answer, not downloads.
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        print(f"server warm-up finished {wait_until_warm(client):.1f} s after the page was served "
              "(encoders, galleries, numba; queries meanwhile wait or share the CPU)")
        q = query_latency_in_process(AppConfig.from_env().gallery_limit)
        print(f"text → image query, function only ({q['gallery_images']} gallery images, k = 8): "
              f"median {q['median_ms']:.0f} ms, max {q['max_ms']:.0f} ms "
              f"(gallery built in {q['build_s']:.1f} s, once per process)")
        h = query_latency_http(client)
        print(f"text → image query through the HTTP API (GeRA + baseline, 16 images encoded): "
              f"median {h['median_ms']:.0f} ms, max {h['max_ms']:.0f} ms")
        u = umap_3000()
        print(f"UMAP of {u['points']} points (faiss kNN graph + UMAP): first call "
              f"{u['first_s']:.1f} s (numba start-up included), again {u['again_other_points_s']:.1f} s")
        j = default_job_http(client)
        print(f"default training job end to end ({j['job']}): {j['wall_s']:.1f} s — {j['status']}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
