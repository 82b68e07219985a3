"""``python -m gera.ui.bench --load``: the app in public mode under load (printed, nothing
asserted). Only ever against a server it starts itself on 127.0.0.1, bounded in time and count.

``clients`` visitors send text → image, image → captions and speech → transcripts queries in
turn for ``seconds`` while one visitor runs the default training job and another replays every
bad input the public app must refuse (each must come back with its own clear message). Prints
requests served, errors by kind, p50/p95 latency per endpoint, the server's peak RSS and how much
its disk use grew, and grows back, once the sessions end.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from gera.data.spoken_words import SOUNDS_DIR
from gera.paths import sessions_root
from gera.ui.config import EXAMPLE_FOLDER

QUERY_TEXTS = ["a large cat face in the centre, on a blue background", "a pizza", "a red apple",
               "a rocket at the top", "two hearts", "a smiling face"]


def _bad_inputs(folder: Path) -> list[tuple[str, dict, str]]:
    """(endpoint, arguments, the message the app must answer with) for each hostile input."""
    import soundfile

    from gera.audio import SAMPLE_RATE

    flac = folder / "bomb.flac"
    with soundfile.SoundFile(str(flac), "w", samplerate=8000, channels=8, format="FLAC") as fh:
        for _ in range(60):  # an hour of 8-channel silence: ~240 KB on disk
            fh.write(np.zeros((8000 * 60, 8), np.int16))
    png = folder / "bomb.png"
    from PIL import Image  # a 20k × 20k 1-bit image: small on disk, 1.2 GB decoded as RGB

    Image.new("1", (20_000, 20_000)).save(png, optimize=True)
    fake = folder / "fake.png"
    fake.write_text("not an image")
    silent = folder / "silent.wav"
    soundfile.write(str(silent), np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    escaping = folder / "escaping.zip"
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("captions.csv", "image,caption\n../../etc/hostname,a caption\n")
    from gradio_client import handle_file

    image_query = dict(model="shipped:emoji", baseline="asif", k=3)
    speech_query = dict(model="shipped:spoken-words", baseline="asif", k=3)
    job = dict(task="emoji", budgets=["30"], methods=["asif"])
    return [
        ("/speech_to_transcripts", {**speech_query, "audio": handle_file(str(flac))}, "channels"),
        ("/speech_to_transcripts", {**speech_query, "audio": handle_file(str(silent))}, "silent"),
        ("/image_to_captions", {**image_query, "image": handle_file(str(png))}, "pixels"),
        ("/image_to_captions", {**image_query, "image": handle_file(str(fake))}, "not an image"),
        ("/text_to_images", {**image_query, "text": "   "}, "Type a description"),
        ("/train", {**job, "task": "upload", "upload": handle_file(str(escaping))},
         "outside the dataset folder"),
        ("/train", {**job, "task_options": "data_dir=/etc"}, "cannot be set here"),
        ("/train", {**job, "task_options": "n_test_pairs={:>999999999}"}, "whole number"),
        ("/train", {**job, "encoder_a": "hf:/etc"}, "model files from this machine"),
        ("/train", {**job, "encoder_a": "hf:someone/big-model"}, "not offered here"),
        ("/train", {**job, "task": "folder:/etc"}, "Unknown task"),
        ("/train", {**job, "budgets": ["10000"]}, "beyond the data"),
    ]


def _kind(err: Exception) -> str:
    text = str(err)
    if "peer closed" in text or "incomplete" in text or "Content-Length" in text:
        return "broken response"
    if "500" in text or "Internal Server Error" in text:
        return "5xx"
    if "Too many" in text:
        return "rate limited"
    return f"{type(err).__name__}: {text[:60]}"


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _disk_bytes(folders) -> int:
    total = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
    return total


def run(port: int, pid: int, clients: int = 16, seconds: float = 120.0,
        max_requests_per_client: int = 2000) -> None:
    from gradio_client import Client, handle_file

    url = f"http://127.0.0.1:{port}/"
    watched = [Path(tempfile.gettempdir()) / "gradio", sessions_root()]
    disk_before = _disk_bytes(watched)
    clip = sorted((SOUNDS_DIR / "digits").glob("*.wav"))[0] if SOUNDS_DIR.is_dir() else None
    image = EXAMPLE_FOLDER / "images" / "large-blue-circle.png"
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def visitor(n: int) -> None:
        client = Client(url, verbose=False, download_files=False)
        for i in range(max_requests_per_client):
            if time.monotonic() > stop_at:
                break
            turn = (n + i) % (3 if clip is not None else 2)
            if turn == 0:
                endpoint, args = "/text_to_images", dict(model="shipped:emoji", baseline="asif",
                                                         text=QUERY_TEXTS[i % len(QUERY_TEXTS)], k=8)
            elif turn == 1:
                endpoint, args = "/image_to_captions", dict(model="shipped:emoji", baseline="asif",
                                                            image=handle_file(str(image)), k=8)
            else:
                endpoint, args = "/speech_to_transcripts", dict(
                    model="shipped:spoken-words", baseline="asif", audio=handle_file(str(clip)), k=8)
            t = time.perf_counter()
            try:
                client.predict(**args, api_name=endpoint)
                with lock:
                    latencies[endpoint].append(time.perf_counter() - t)
            except Exception as err:  # noqa: BLE001 - counted by kind, that is the point
                with lock:
                    errors[(endpoint, _kind(err))] += 1
        client.close()

    job_result = {}

    def trainer() -> None:
        client = Client(url, verbose=False, download_files=False)
        t = time.perf_counter()
        try:
            job_result["status"] = client.predict(api_name="/train")[0]
        except Exception as err:  # noqa: BLE001
            job_result["status"] = f"failed: {_kind(err)}"
        job_result["wall_s"] = time.perf_counter() - t
        client.close()

    refused = {}

    def hostile(folder: Path) -> None:
        client = Client(url, verbose=False, download_files=False)
        for endpoint, args, message in _bad_inputs(folder):
            t = time.perf_counter()
            try:
                client.predict(**args, api_name=endpoint)
                refused[(endpoint, message)] = "ACCEPTED (should be refused)"
            except Exception as err:  # noqa: BLE001
                ok = message in str(err)
                refused[(endpoint, message)] = (f"{'refused' if ok else 'WRONG MESSAGE'} in "
                                                f"{time.perf_counter() - t:.1f} s"
                                                + ("" if ok else f": {str(err)[:80]}"))
        client.close()

    with tempfile.TemporaryDirectory(prefix="gera-load-") as tmp:
        threads = [threading.Thread(target=trainer), threading.Thread(target=hostile,
                                                                      args=(Path(tmp),))]
        threads += [threading.Thread(target=visitor, args=(n,)) for n in range(clients)]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 600)
        wall = time.perf_counter() - t0
    disk_peak = _disk_bytes(watched)
    time.sleep(5)  # the sessions have closed: let the server clean up after them

    served = sum(len(v) for v in latencies.values())
    print(f"load: {clients} visitors for {seconds:.0f} s (wall {wall:.0f} s), one training job, "
          f"one visitor replaying {len(refused)} bad inputs; public mode, server on 127.0.0.1")
    print(f"queries served: {served}; errors: {sum(errors.values())}"
          + "".join(f"\n  {endpoint}: {kind} × {n}" for (endpoint, kind), n in errors.items()))
    for endpoint, values in sorted(latencies.items()):
        ms = sorted(1000 * v for v in values)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(f"  {endpoint:<24} n={len(ms):>4}  p50 {statistics.median(ms):>6.0f} ms  "
              f"p95 {p95:>6.0f} ms")
    print(f"training job during the load: {job_result.get('wall_s', float('nan')):.0f} s — "
          f"{job_result.get('status', '?')}")
    print("bad inputs:" + "".join(f"\n  {endpoint} → “{message}”: {outcome}"
                                  for (endpoint, message), outcome in refused.items()))
    print(f"server peak RSS: {_peak_rss_mib(pid):.0f} MiB")
    print(f"disk (Gradio's temp files + visitors' folders): {disk_before / 2**20:.1f} MiB before, "
          f"{disk_peak / 2**20:.1f} MiB at the end of the load, "
          f"{_disk_bytes(watched) / 2**20:.1f} MiB 5 s after the sessions closed")
