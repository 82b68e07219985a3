"""The app in public mode (GERA_PUBLIC=1, as on a Space), as a hostile visitor would use it,
through its API: every refusal is a clear message, nothing of the server leaks, limits hold, and
the app keeps serving. (The library-level half of these checks is in test_safety.py.)"""
import os
import time
import zipfile

import pytest
from conftest import serve_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_safety import black_png, silent_flac

from gera.paths import sessions_root
from gera.ui import AppConfig
from gera.ui.config import EXAMPLE_FOLDER, PUBLIC_ENCODERS
from gera.ui.limits import Limits, RateLimiter, RunningJobs

pytestmark = [pytest.mark.slow,  # a launched server
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*")]
K = 3
JOB = dict(task="emoji", budgets=["30"], methods=["asif"], unpaired_a="150", unpaired_b="300",
           task_options="n_test_pairs=100", max_steps=30)


@pytest.fixture(scope="module")
def public_env():
    mp = pytest.MonkeyPatch()
    mp.setenv("GERA_PUBLIC", "1")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def client(public_env):
    limits = Limits(job_seconds=120, max_fits=6, max_steps=200)
    for url in serve_app(AppConfig.from_env(gallery_limit=40, limits=limits)):
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def strict(public_env):
    limits = Limits(job_seconds=2, trains_per_hour=1, queries_per_minute=3)
    for url in serve_app(AppConfig.from_env(gallery_limit=40, limits=limits)):
        yield Client(url, verbose=False)


def train(client, **changes):
    return client.predict(**{**JOB, **changes}, api_name="/train")


@pytest.mark.parametrize("task, options, problem", [
    ("fashion-mnist", "data_dir=/etc", "'data_dir' cannot be set here"),
    ("fashion-mnist", "templates=['{:>999999999}']", "'templates' cannot be set here"),
    ("emoji", "n_test_pairs={:>999999999}", "must be a whole number"),
    ("fashion-mnist", "n_test=99999999", "from 100 to 10000"),
    ("fashion-mnist", "n_test=²", "from 100 to 10000"),
    ("emoji", "font=/etc/passwd", "'font' cannot be set here"),
])
def test_task_options_outside_the_allow_list_are_refused(client, task, options, problem):
    with pytest.raises(AppError, match=problem) as err:
        train(client, task=task, task_options=options)
    assert "/etc" not in str(err.value) or "data_dir" in problem or "font" in problem


@pytest.mark.parametrize("encoder, problem", [
    ("hf:/etc", "loads model files from this machine"),
    ("hf:someone/unlisted-model", "not offered here"),
    ("/root/.cache", "not offered here"),
    ("openclip:ViT-H-14:laion2b_s32b_b79k", "not offered here"),
])
def test_encoders_outside_the_operators_list_are_refused(client, encoder, problem):
    with pytest.raises(AppError, match=problem):
        train(client, encoder_a=encoder)
    assert "minilm" in PUBLIC_ENCODERS


@pytest.mark.parametrize("encoder", ["phonetic:8192", "phonetic:../../etc", "phonetic --help"])
def test_the_phonetic_encoder_is_offered_only_as_shipped(client, encoder):
    # its hash size would grow every text head; anything but the plain name is refused
    with pytest.raises(AppError, match="not offered here"):
        train(client, pair="speech", task="spoken-words", encoder_a="whisper_base",
              encoder_b=encoder, task_options="")
    assert "phonetic" in PUBLIC_ENCODERS


def test_fewer_speech_engines_refuse_a_budget_beyond_their_voices(client):
    # flite alone has 4 voices (one held out): its largest budget is 979, not 3,382
    with pytest.raises(AppError, match="serves at most 979 pairs"):
        train(client, pair="speech", task="spoken-words", encoder_a="speech_embedding",
              task_options="engines=flite", budgets=["1000"], unpaired_a="", unpaired_b="")


def test_server_folders_and_typed_tasks_are_out_of_reach(client):
    with pytest.raises(AppError, match="switched off"):
        train(client, task="folder", folder="/etc")
    with pytest.raises(AppError, match="Unknown task"):
        train(client, task="folder:/etc")


def test_a_zip_naming_files_outside_itself_is_refused_and_leaves_nothing(client, tmp_path):
    before = set(sessions_root().rglob("*")) if sessions_root().exists() else set()
    for target in ("../x.png", "/etc/hostname"):
        archive = tmp_path / "escape.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("captions.csv", f"image,caption\n{target},a caption\n")
        with pytest.raises(AppError, match="outside the dataset folder") as err:
            train(client, task="upload", upload=handle_file(str(archive)))
        assert "/tmp" not in str(err.value) and "/etc" not in str(err.value)
    after = set(sessions_root().rglob("*"))
    assert not [p for p in after - before if p.is_file()], "a refused upload left files behind"


def test_jobs_over_the_limits_are_refused_before_they_start(client):
    with pytest.raises(AppError, match="maximum value 200|At most 200 training steps"):
        train(client, max_steps=1000)
    with pytest.raises(AppError, match="at most 6 per job"):
        train(client, budgets=["10", "30"], seeds=2, methods=["asif", "cca"])


def test_bombs_as_queries_are_refused_quickly(client, tmp_path):
    flac = silent_flac(tmp_path / "bomb.flac", channels=8, seconds=3600)
    t = time.monotonic()
    with pytest.raises(AppError, match="channels"):
        client.predict(model="shipped:spoken-words", baseline="asif", audio=handle_file(str(flac)),
                       k=K, api_name="/speech_to_transcripts")
    png = black_png(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(AppError, match="pixels|too large"):
        client.predict(model="shipped:emoji", baseline="asif", image=handle_file(str(png)), k=K,
                       api_name="/image_to_captions")
    assert time.monotonic() - t < 20


def test_a_job_runs_and_its_gallery_images_are_files(client):
    status, table, differences, curves, metrics, files, *_ = train(client, methods=["gera", "asif"])
    assert status.startswith("✅ Done")
    for path in files:  # the downloads name no folder of the server
        if path.endswith(".json"):
            text = open(path).read()
            assert "/tmp" not in text and str(sessions_root()) not in text
    ours, baseline = client.predict(model="session", baseline="asif", text="a red apple", k=K,
                                    api_name="/text_to_images")
    assert len(ours) == K and all(item["image"].endswith(".png") for item in ours)


def test_strict_limits_stop_a_long_job_and_a_flood_of_queries(strict):
    with pytest.raises(AppError, match="past this app's limit of 2 s"):
        train(strict, budgets=["300"], methods=["gera"], unpaired_a="", unpaired_b="",
              task_options="")
    with pytest.raises(AppError, match="Too many training jobs"):
        train(strict)
    for _ in range(3):
        strict.predict(model="shipped:emoji", baseline="asif", text="a pizza", k=K,
                       api_name="/text_to_images")
    with pytest.raises(AppError, match="Too many queries"):
        strict.predict(model="shipped:emoji", baseline="asif", text="a pizza", k=K,
                       api_name="/text_to_images")


def test_rate_limits_and_running_jobs_count_per_visitor():
    limiter = RateLimiter(2, 60, "queries")
    limiter.check("a"), limiter.check("a"), limiter.check("b")
    with pytest.raises(Exception, match="Too many queries"):
        limiter.check("a")
    running = RunningJobs()
    running.start("a")
    with pytest.raises(Exception, match="already have a training job"):
        running.start("a")
    running.start("b")
    running.finish("a")
    running.start("a")


def test_public_messages_carry_no_server_paths():
    from gera.ui.errors import without_server_paths

    message = without_server_paths("Could not read /tmp/gera-sessions/ab12/uploads/x/a.png, "
                                   "task folder:/srv/data/pairs; see https://huggingface.co/a/b")
    assert "/tmp" not in message and "/srv" not in message and "a.png" in message
    assert "https://huggingface.co/a/b" in message


def test_a_sessions_files_go_when_it_ends(tmp_path, monkeypatch):
    from gera.ui.workspace import end_session, session_folder, sweep_sessions

    monkeypatch.setenv("GERA_SESSIONS_DIR", str(tmp_path))
    folder = session_folder("../../etc")  # a hostile session hash names no other folder
    assert folder.parent == tmp_path
    (folder / "uploads").mkdir()
    (folder / "uploads" / "a.png").write_bytes(b"x")
    end_session("../../etc")
    assert not folder.exists()
    old = session_folder("old")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert sweep_sessions(3600) == [old] and not old.exists()


def test_a_csv_too_long_to_read_is_refused_before_reading(tmp_path):
    from gera.data import get_task
    from gera.data.folder import MAX_ROWS
    from gera.errors import GeraError

    (tmp_path / "a.png").write_bytes(b"")
    rows = "".join(f"./{'./' * (i % 50)}a.png,caption {i}\n" for i in range(MAX_ROWS + 1))
    (tmp_path / "captions.csv").write_text("image,caption\n" + rows)
    t = time.monotonic()
    with pytest.raises(GeraError, match=f"more than {MAX_ROWS} rows"):
        get_task(f"folder:{tmp_path}")
    assert time.monotonic() - t < 10


def test_one_flag_makes_an_app_public(monkeypatch):
    monkeypatch.delenv("GERA_PUBLIC", raising=False)
    config = AppConfig(public=True)
    assert config.allowed_encoders == PUBLIC_ENCODERS and not config.allow_server_folders
    assert config.limits == Limits.public()
    monkeypatch.setenv("GERA_CACHE_MAX_BYTES", "none")
    monkeypatch.setenv("GERA_JOB_SECONDS", "none")
    assert Limits.from_env(public=True).job_seconds is None
    assert Limits.from_env(public=True).cache_max_bytes is None
    monkeypatch.setenv("GERA_SESSION_TTL_SECONDS", "none")
    with pytest.raises(Exception, match="GERA_SESSION_TTL_SECONDS"):
        Limits.from_env(public=True)


@pytest.mark.parametrize("endpoint, args, problem", [
    ("/text_to_images", dict(model="shipped:../../etc", baseline="asif", text="a pizza", k=3),
     "not in the list of choices|No shipped checkpoints"),
    ("/text_to_images", dict(model="shipped:emoji", baseline="magic", text="a pizza", k=3),
     "not in the list of choices|has no magic"),
    ("/text_to_images", dict(model="shipped:emoji", baseline="asif", text="a pizza", k=10**6),
     "maximum value"),
    ("/text_to_images", dict(model="shipped:emoji", baseline="asif", text="x" * 10_000, k=3),
     "characters long"),
    ("/neighbourhoods", dict(model="shipped:emoji", method="gera", modality="a", points=10**9,
                             k=10, colour_by="class"), "maximum value"),
    ("/neighbourhoods", dict(model="shipped:emoji", method="gera", modality="../etc",
                             points=100, k=10, colour_by="class"), "not in the list of choices"),
    # only shipped budgets: one no task ships, one shipped for another task, a path
    ("/text_to_images", dict(model="shipped:emoji", budget=1000, baseline="asif", text="a pizza",
                             k=3), "No shipped emoji checkpoints at N = 1000"),
    ("/neighbourhoods", dict(model="shipped:emoji", budget=3382, method="gera", modality="a",
                             points=100, k=10, colour_by="class"),
     "No shipped emoji checkpoints at N = 3382: the budgets shipped for emoji are 30, 300, 7987"),
    ("/speech_to_transcripts", dict(model="shipped:spoken-words", budget="../etc",
                                    baseline="asif", audio=None, k=3),
     "No shipped spoken-words checkpoints at N = ../etc"),
    # the radio leaves its value to the callbacks: any JSON may arrive
    ("/text_to_images", dict(model="shipped:emoji", budget=[300], baseline="asif", text="a pizza",
                             k=3), r"No shipped emoji checkpoints at N = \[300\]"),
    ("/neighbourhoods", dict(model="shipped:emoji", budget={"n": 300}, method="gera", modality="a",
                             points=100, k=10, colour_by="class"), "No shipped emoji checkpoints"),
    ("/text_to_images", dict(model="shipped:emoji", budget=True, baseline="asif", text="a pizza",
                             k=3), "No shipped emoji checkpoints at N = True"),
])
def test_hostile_query_parameters_are_refused(client, endpoint, args, problem):
    with pytest.raises(AppError, match=problem) as err:
        client.predict(**args, api_name=endpoint)
    assert "/etc" not in str(err.value).replace("../etc", "")


def test_the_budget_radio_leaves_its_check_to_the_callbacks():
    # A search sent just after switching models carries the old model's budget: the callback
    # names the budgets the new model has (above), where Gradio's own check only said "not in
    # the list of choices". The front end still draws it as Gradio's radio.
    from gera.ui.budget_selector import radio
    from gera.ui.models import ShippedModels

    budget = radio(ShippedModels(AppConfig().checkpoints, limit=40), ["shipped:emoji"], "budget")
    # Gradio answers gr.update(choices=…) with a new component built from the class: the same
    rebuilt = type(budget)(**{**budget.constructor_args, "choices": [("N = 30", 30)],
                              "render": False})
    for component in (budget, rebuilt):
        assert component.preprocess(10) == 10 and component.preprocess("../etc") == "../etc"
        assert component.get_block_name() == "radio"


def test_a_method_whose_fit_runs_several_trainings_counts_them_against_the_job_limit():
    from gera.errors import GeraError
    from gera.ui.form import TrainForm
    from gera.ui.limits import Limits
    from gera.ui.training import _check_size

    limits = Limits(max_fits=6)
    form = TrainForm(seeds=1, grid_size=1)
    _check_size(form, [30], ["gera", "contrastive", "auto"], limits)  # auto reuses their fits
    with pytest.raises(GeraError, match="asks for 8 fits"):  # pseudo-pairs: up to 4 trainings
        _check_size(form, [30], ["pseudo", "gera", "contrastive", "cca", "asif"], limits)


@pytest.mark.parametrize("option", ["stack_fits", "matmul_precision", "device", "cpu_threads"])
def test_process_wide_training_options_are_not_the_visitors(client, option):
    # Operator settings (they act on the whole process or its GPU): no form field, and the
    # /train API names no such parameter.
    from gera.ui.form import FORM_FIELDS

    assert option not in FORM_FIELDS
    with pytest.raises(Exception, match=option):
        train(client, **{option: "always"})
