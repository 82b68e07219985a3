"""The Gradio app through its API: gradio_client against a launched server (CPU, no network).

Small on purpose: the shipped checkpoints with a 40-item gallery, a private embedding cache, and
a tiny training job on the 30-pair example folder.
"""
import os
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import serve_app
import soundfile
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from threadpoolctl import ThreadpoolController

from gera.checkpoint import load_alignment
from gera.data.spoken_words import SOUNDS_DIR
from gera.encoders import get_encoder, list_encoders
from gera.audio import SAMPLE_RATE
from gera.ui import AppConfig
from gera.ui.config import EXAMPLE_FOLDER, REPO_ROOT
from gera.ui.device import one_thread
from gera.ui.form import FORM_FIELDS
from gera.ui.jobs import THREAD_NAME
from gera.ui.models import shared_thumbnails

# gradio's own use of pandas warns on every table it sends; nothing to do with the app
pytestmark = [pytest.mark.slow,  # a launched server
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*")]
K = 5
TINY_JOB = dict(pair="image", task=f"folder:{EXAMPLE_FOLDER}", upload=None, folder="",
                encoder_a="mobilenet_v2", encoder_b="minilm", budgets=["10"], unpaired_a="",
                unpaired_b="", methods=["gera", "contrastive", "asif"], alpha=1.0, k=10,
                kernel="heat", max_steps=30, seeds=1, grid_size=1, task_options="")
HAS_SPEECH = ("speech_embedding" in list_encoders("speech") and SOUNDS_DIR.is_dir()
              and any((REPO_ROOT / "checkpoints").glob("spoken-words-*.json")))


@pytest.fixture(scope="module")
def url():
    yield from serve_app(AppConfig(gallery_limit=40))


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def train(client, **changes):
    return client.predict(**{**TINY_JOB, **changes}, api_name="/train")


def test_tiny_training_job_returns_a_table_and_plots(client):
    status, table, differences, curves, metrics, files, *sources = train(client)
    assert status.startswith("✅ Done")
    assert [row[1] for row in table["data"]] == ["gera", "contrastive", "asif"]
    assert "zero_shot_top1" in table["headers"] and "±" in table["data"][0][2]
    assert {row[1] for row in differences["data"]} == {"contrastive", "asif"}
    assert curves["type"] == "plotly" and metrics["type"] == "plotly"
    assert sum(f.endswith(".safetensors") for f in files) == 3
    # the run joins the model selectors of the Neighbourhoods and Retrieval tabs
    assert sources[0]["value"] == "session"


def test_cancelling_a_job_stops_its_worker(client):
    # emoji in an empty cache embeds thousands of images: cancel while that runs
    job = client.submit(*{**TINY_JOB, "task": "emoji", "budgets": ["300"]}.values(),
                        api_name="/train")
    _wait_until_embedding(job)
    assert _job_threads()
    job.cancel()
    deadline = time.monotonic() + 30
    while _job_threads() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _job_threads()


def _job_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _wait_until_embedding(job):
    deadline = time.monotonic() + 120
    while "Embedding" not in str(job.status().progress_data):
        assert time.monotonic() < deadline, "the job never started embedding"
        time.sleep(0.2)


def test_a_query_is_answered_while_a_training_job_runs(url, client):
    # emoji in an empty cache embeds thousands of images: ask while that runs. A query that
    # waited for the job (one queue slot, one lock) would come back after it, or never.
    job = client.submit(*{**TINY_JOB, "task": "emoji", "budgets": ["300"]}.values(),
                        api_name="/train")
    _wait_until_embedding(job)
    try:
        ours, baseline = Client(url, verbose=False).predict(
            model="shipped:emoji", baseline="asif", text="a pizza", k=K,
            api_name="/text_to_images")
        assert len(ours) == len(baseline) == K
        assert _job_threads() and not job.done(), "the query was answered after the job ended"
    finally:
        job.cancel()
        deadline = time.monotonic() + 30
        while _job_threads() and time.monotonic() < deadline:
            time.sleep(0.2)


def test_a_query_embeds_its_text_once_for_both_methods(client, monkeypatch):
    client.predict(model="shipped:emoji", baseline="asif", text="warm", k=K,
                   api_name="/text_to_images")  # the gallery is built (and embedded) first
    meta = load_alignment(REPO_ROOT / "checkpoints" / "emoji-N300-gera")[1]
    encoder = get_encoder(meta["encoder_b"], "text")  # the server's: it runs in this process
    embedded, embed = [], encoder.embed
    monkeypatch.setattr(encoder, "embed",
                        lambda items, *a, **kw: embedded.append(list(items)) or embed(items, *a, **kw))
    ours, baseline = client.predict(model="shipped:emoji", baseline="asif", text="a pizza", k=K,
                                    api_name="/text_to_images")
    assert len(ours) == len(baseline) == K
    assert embedded == [["a pizza"]]


def test_a_query_computes_on_one_thread_and_leaves_a_running_job_its_threads():
    seen, query_inside, job_looked = {}, threading.Event(), threading.Event()

    def on_two_threads():  # this thread only (OpenMP's count is per thread), whatever it had
        torch.get_num_threads()
        return ThreadpoolController().limit(limits=2, user_api="openmp")

    def job():  # a training job's thread, running before and during the query
        with on_two_threads():
            seen["job before"] = torch.get_num_threads()
            query_inside.wait(10)
            seen["job during"] = torch.get_num_threads()
            job_looked.set()

    def query():
        with on_two_threads():
            with one_thread():
                seen["query"] = torch.get_num_threads()
                query_inside.set()
                job_looked.wait(10)
            seen["query after"] = torch.get_num_threads()

    threads = [threading.Thread(target=job), threading.Thread(target=query)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"job before": 2, "job during": 2, "query": 1, "query after": 2}


def test_shipped_gallery_images_are_served_from_their_own_files(url):
    ours, _ = Client(url, verbose=False, download_files=False).predict(
        model="shipped:emoji", baseline="asif", text="a red apple", k=K, api_name="/text_to_images")
    root = shared_thumbnails().resolve()
    for item in ours:  # not copied into Gradio's cache on every request
        assert root in Path(item["image"]["path"]).resolve().parents
        answer = httpx.get(item["image"]["url"])
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    # served as it is, the folder opens nothing beside it: not through a link planted in it
    link = root / f"link-{os.getpid()}.png"
    link.symlink_to("/etc/hostname")
    try:
        assert httpx.get(f"{url}gradio_api/file={link}").status_code == 403
    finally:
        link.unlink()


def test_an_uploaded_zip_of_pairs_trains(client, tmp_path):
    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in EXAMPLE_FOLDER.rglob("*"):
            zf.write(path, "my-pairs/" + str(path.relative_to(EXAMPLE_FOLDER)))
    status, table, *_ = train(client, task="upload", upload=handle_file(str(archive)),
                              methods=["asif"])
    assert status.startswith("✅ Done") and table["data"][0][1] == "asif"


def test_text_query_returns_k_images_for_gera_and_the_baseline(client):
    gera, baseline = client.predict(model="shipped:emoji", baseline="asif",
                                    text="a large cat face in the centre", k=K,
                                    api_name="/text_to_images")
    assert len(gera) == len(baseline) == K
    scores = [float(item["caption"].split(" · ")[0]) for item in gera]
    assert scores == sorted(scores, reverse=True)


def test_each_user_keeps_their_own_session(url, client):
    train(client)
    own = client.predict(model="session", baseline="contrastive", text="a red circle", k=3,
                         api_name="/text_to_images")
    assert len(own[0]) == 3
    stranger = Client(url, verbose=False)  # a second browser: its selectors offer no run
    with pytest.raises(AppError, match="session is not in the list of choices"):
        stranger.predict(model="session", baseline="contrastive", text="a red circle", k=3,
                         api_name="/text_to_images")


def test_image_query_returns_k_captions_and_refuses_a_non_image(client, tmp_path):
    image = EXAMPLE_FOLDER / "images" / "large-blue-circle.png"
    _, gera, baseline = client.predict(model="shipped:emoji", baseline="procrustes",
                                       image=handle_file(str(image)), k=K,
                                       api_name="/image_to_captions")
    assert len(gera["data"]) == len(baseline["data"]) == K
    fake = tmp_path / "not-an-image.png"
    fake.write_text("hello")
    with pytest.raises(AppError, match="not an image"):
        client.predict(model="shipped:emoji", baseline="asif", image=handle_file(str(fake)),
                       k=K, api_name="/image_to_captions")


@pytest.mark.skipif(not HAS_SPEECH, reason="no speech encoder, recordings or speech checkpoints")
def test_speech_query_returns_k_transcripts_and_refuses_bad_audio(client, tmp_path):
    clip = sorted((SOUNDS_DIR / "digits").glob("*.wav"))[0]
    gera, baseline = client.predict(model="shipped:spoken-words", baseline="asif",
                                    audio=handle_file(str(clip)), k=K,
                                    api_name="/speech_to_transcripts")
    assert len(gera["data"]) == len(baseline["data"]) == K
    silent, long, corrupt = tmp_path / "silent.wav", tmp_path / "long.wav", tmp_path / "bad.wav"
    soundfile.write(silent, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    soundfile.write(long, 0.1 * np.sin(np.arange(31 * 8000) / 5.0).astype(np.float32), 8000)
    corrupt.write_bytes(b"RIFF\x00\x00not really a wave file")
    for path, problem in ((silent, "silent"), (long, "over the 30 s limit"), (corrupt, "corrupt")):
        with pytest.raises(AppError, match=problem):
            client.predict(model="shipped:spoken-words", baseline="asif",
                           audio=handle_file(str(path)), k=K, api_name="/speech_to_transcripts")


def test_bad_input_gives_a_visible_error_and_the_app_keeps_serving(client, tmp_path):
    with pytest.raises(AppError, match="Type a description"):
        client.predict(model="shipped:emoji", baseline="asif", text="   ", k=K,
                       api_name="/text_to_images")
    with pytest.raises(AppError, match="beyond the data"):
        train(client, budgets=["10000"])
    with pytest.raises(AppError, match="at least one method"):
        train(client, methods=[])
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(AppError, match="not a readable .zip"):
        train(client, task="upload", upload=handle_file(str(broken)))
    no_csv = tmp_path / "no-csv.zip"
    with zipfile.ZipFile(no_csv, "w") as zf:
        zf.writestr("images/a.png", b"not even an image")
    with pytest.raises(AppError, match="no captions.csv"):
        train(client, task="upload", upload=handle_file(str(no_csv)))
    bad_rows = tmp_path / "bad-rows.zip"
    with zipfile.ZipFile(bad_rows, "w") as zf:
        zf.writestr("captions.csv", "image,caption\nmissing.png,a caption\n")
    with pytest.raises(AppError, match="captions.csv"):
        train(client, task="upload", upload=handle_file(str(bad_rows)))
    escaping = tmp_path / "escaping.zip"
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("../captions.csv", "image,caption\n")
    with pytest.raises(AppError, match="outside its own folder"):
        train(client, task="upload", upload=handle_file(str(escaping)))
    gera, _ = client.predict(model="shipped:emoji", baseline="asif", text="a pizza", k=K,
                             api_name="/text_to_images")
    assert len(gera) == K


def test_every_endpoint_names_its_parameters(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = {endpoint: [p["parameter_name"] for p in api[endpoint]["parameters"]]
             for endpoint in ("/train", "/text_to_images", "/image_to_captions",
                              "/speech_to_transcripts", "/neighbourhoods")}
    assert names["/train"] == list(FORM_FIELDS)
    assert names["/text_to_images"] == ["model", "budget", "baseline", "text", "k"]
    assert names["/image_to_captions"] == ["model", "budget", "baseline", "image", "k"]
    assert names["/speech_to_transcripts"] == ["model", "budget", "baseline", "audio", "k"]
    assert names["/neighbourhoods"] == ["model", "budget", "method", "modality", "points", "k",
                                        "colour_by", "centre"]
    assert not any(name.startswith("param_") for params in names.values() for name in params)


def test_the_api_accepts_every_task_the_page_offers_and_no_other(client):
    # speech tasks are offered once the page switches to speech ↔ text; the API takes them too
    with pytest.raises(AppError, match="beyond the data"):
        train(client, pair="speech", task="spoken-words", encoder_a="speech_embedding",
              budgets=["10000"])
    with pytest.raises(AppError, match="Unknown task"):
        train(client, task="folder:/etc")


def test_the_readme_api_example_runs(url):
    """The README's gradio_client example, verbatim, against this server."""
    readme = (REPO_ROOT / "README.md").read_text()
    example = readme.split("<!-- api-example -->")[1].split("```python")[1].split("```")[0]
    namespace = {}
    exec(example.replace("http://127.0.0.1:7860/", url), namespace)  # noqa: S102 - our README
    assert len(namespace["ours"]) == 3
