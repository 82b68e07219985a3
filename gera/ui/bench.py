"""``python -m gera.ui.bench``: the app's performance figures (printed, nothing asserted).

1. cold start: ``python app.py`` in a fresh process until its page is served;
2. text → image query latency: the query function alone, and through HTTP, on a quiet server
   and while a visitor's default training job runs in it (``--latency`` runs only this part;
   ``--before REV`` measures the app at git revision REV too, in the same run);
3. UMAP of 3,000 points (the Neighbourhoods tab's projection, faiss kNN graph included);
4. the default training job (the form's initial values) end to end through the HTTP API.

Run it with a warm embedding cache (``scripts/make_checkpoints.sh`` warms what 2–4 need) and the
shipped checkpoints in place. The targets (issues 4 and 10, 2 CPU cores): cold start < 20 s,
query < 200 ms quiet and < 400 ms during a training job, UMAP < 20 s, default job < 60 s.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

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


def start_server(port: int, app_dir: Path = REPO_ROOT, **env_vars: str) -> tuple[subprocess.Popen, float]:
    """Start ``app.py`` of the checkout at ``app_dir`` (with ``env_vars`` set); return the
    process and the seconds until ``/`` answered."""
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           **env_vars}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env,
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
    retrieval.text_to_images(models, (featured(), featured_twin()), "warm-up", 8)
    times = []
    for query in QUERIES * 3:
        t = time.perf_counter()
        retrieval.text_to_images(models, (featured(), featured_twin()), query, 8)
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


class PageClient:
    """Sends text → image queries the way the app's own page does: one kept-alive connection and
    one session; each query joins the queue (``POST /gradio_api/queue/join``) and its answer is
    read from the session's event stream (``GET /gradio_api/queue/data``). It builds nothing per
    query, so what it times is the server and the loopback connection."""

    def __init__(self, url: str, api_name: str = "text_to_images"):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=300)
        config = self.http.get("/config").json()
        dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
        kinds = {c["id"]: c.get("type") for c in config["components"]}
        self.fn_index = dep["id"]
        self.is_state = [kinds[i] == "state" for i in dep["inputs"]]
        info = self.http.get("/gradio_api/info").json()["named_endpoints"][f"/{api_name}"]
        self.names = [p["parameter_name"] for p in info["parameters"]]
        self.session = secrets.token_hex(8)

    def __call__(self, **params) -> list:
        """The endpoint's outputs for ``params`` (by name; the session's state is the server's)."""
        values = iter([params.get(name) for name in self.names])
        data = [None if state else next(values) for state in self.is_state]
        joined = self.http.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index, "session_hash": self.session,
            "event_data": None, "trigger_id": None})
        joined.raise_for_status()
        event_id, output = joined.json()["event_id"], None
        with self.http.stream("GET", "/gradio_api/queue/data",
                              params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():  # to the stream's end: the connection is kept
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    if not message.get("success"):
                        raise RuntimeError(f"query failed: {message.get('output')}")
                    output = message["output"]["data"]
        return output


def _text_query(send: Callable, i: int) -> float:
    """Milliseconds for one text → image query (GeRA and the baseline, 8 images each)."""
    t = time.perf_counter()
    send(model="shipped:emoji", baseline=featured_twin(), text=QUERIES[i % len(QUERIES)], k=8)
    return 1000 * (time.perf_counter() - t)


def _median_p95(times: list[float]) -> str:
    ranked = sorted(times)
    p95 = ranked[min(len(ranked) - 1, round(0.95 * (len(ranked) - 1)))]
    return f"{statistics.median(ranked):4.0f} / {p95:4.0f} ms (n = {len(ranked)})"


def query_latency_http(url: str, quiet_queries: int = 40) -> dict:
    """Text → image latency through HTTP, by two clients taking turns: the page's way
    (``PageClient``) and ``gradio_client`` (the README's API example; every call of it builds two
    new HTTP clients, TLS certificates loaded, and polls for its answer every 50 ms). First on a
    quiet server, then while another visitor's default training job runs in it, submitted
    through the API as that visitor would."""
    from gradio_client import Client

    page = PageClient(url)
    client = Client(url, verbose=False, download_files=False)
    via_client = lambda **q: client.predict(**q, api_name="/text_to_images")  # noqa: E731
    out = {"page": {}, "gradio_client": {}}
    for send in (page, via_client):  # warm-up: each client's first call
        _text_query(send, 0)
    times = {"page": [], "gradio_client": []}
    for i in range(quiet_queries):
        times["page"].append(_text_query(page, i))
        times["gradio_client"].append(_text_query(via_client, i))
    for name in times:
        out[name]["quiet"] = times[name]
    d = AppConfig().defaults
    form = {**asdict(d), "budgets": list(d.budgets), "methods": list(d.methods)}
    visitor = Client(url, verbose=False, download_files=False)
    t0 = time.perf_counter()
    job = visitor.submit(**form, api_name="/train")
    times = {"page": [], "gradio_client": []}
    i = 0
    while not job.done():
        times["page"].append(_text_query(page, i))
        if not job.done():
            times["gradio_client"].append(_text_query(via_client, i))
        i += 1
    out["job_s"] = time.perf_counter() - t0
    out["job_status"] = job.result()[0]
    for name in times:
        out[name]["training"] = times[name]
    return out


def print_latency(label: str, h: dict) -> None:
    prefix = f"  {label:<14} " if label else "  "
    for name, what in (("page", "the page's protocol, one kept-alive connection"),
                       ("gradio_client", "gradio_client, the README's API example")):
        quiet, training = h[name]["quiet"], h[name].get("training")
        line = f"{prefix}{what:<48} quiet {_median_p95(quiet)}"
        if training:
            line += f"; during the training job {_median_p95(training)}"
        print(line)
    if "job_s" in h:
        print(f"{prefix}the training job beside them (default form, another visitor): "
              f"{h['job_s']:.0f} s — {h['job_status'][:12]}")


def latency(before: Optional[str], rounds: int) -> None:
    """Text → image latency of this checkout's app and, with ``before``, of the app at that git
    revision (a temporary worktree, same venv and cache), one after the other, ``rounds`` times."""
    apps = [("now", REPO_ROOT)]
    tmp = None
    if before:
        tmp = Path(tempfile.mkdtemp(prefix="gera-bench-"))
        subprocess.run(["git", "worktree", "add", "--detach", str(tmp / "before"), before],
                       cwd=REPO_ROOT, check=True, capture_output=True)
        apps.insert(0, (f"before {before}", tmp / "before"))
    print("text → image through HTTP (GeRA + baseline, 8 images each), median / p95:")
    try:
        for _ in range(rounds):
            for label, app_dir in apps:
                port = _free_port()
                proc, _ = start_server(port, app_dir)
                try:
                    url = f"http://127.0.0.1:{port}/"
                    from gradio_client import Client

                    wait_until_warm(Client(url, verbose=False, download_files=False))
                    print_latency(label, query_latency_http(url))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    finally:
        if tmp is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "before")],
                           cwd=REPO_ROOT, capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)


def umap_3000() -> dict:
    """3,000 emoji images (held-out, then pool items of the shipped split), aligned by the
    shipped GeRA checkpoint at the app's default budget, projected twice: the first call pays
    numba's start-up."""
    from gera.checkpoint import checkpoint_stem, load_alignment
    from gera.embedded import EmbeddedTask
    from gera.ui.models import DEFAULT_BUDGET
    from gera.ui.projection import umap_2d

    stem = checkpoint_stem("emoji", DEFAULT_BUDGET)
    alignment, meta = load_alignment(AppConfig().checkpoints / f"{stem}-{featured()}")
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
    parser.add_argument("--latency", action="store_true",
                        help="only the HTTP query latency, quiet and during a training job")
    parser.add_argument("--before", metavar="REV",
                        help="with --latency: measure the app at this git revision too")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --latency: measure each app this many times, in turn")
    args = parser.parse_args()
    if args.load:
        return load_benchmark(args.clients, args.seconds)
    if args.latency:
        return latency(args.before, args.rounds)
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
        print(f"text → image query, function only (one text embedded, ranked by GeRA and the "
              f"baseline over {q['gallery_images']} gallery images, k = 8): "
              f"median {q['median_ms']:.0f} ms, max {q['max_ms']:.0f} ms "
              f"(gallery built in {q['build_s']:.1f} s, once per process)")
        print("text → image query through HTTP (GeRA + baseline, 8 images each), median / p95:")
        print_latency("", query_latency_http(f"http://127.0.0.1:{port}/"))
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
