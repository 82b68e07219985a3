"""Safe on a public Space, library side: hostile uploads, names and options are refused fast,
with bounded memory and clear messages that show no server paths.

Memory is measured in a fresh Python per case (peak RSS growth while the case runs), with an
address-space guard so that a regression fails with MemoryError instead of taking the machine.
"""
from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
from PIL import Image, ImageDraw

from gera import paths
from gera.audio import SAMPLE_RATE, load_audio
from gera.data import get_task
from gera.encoders.base import Encoder
from gera.errors import GeraError
from gera.images import MAX_SIDE, open_image

REPO = Path(__file__).resolve().parents[1]


def measure(setup: str, action: str, guard_mb: int = 3000, timeout: float = 300) -> dict:
    """Run ``setup`` then ``action`` (an expression) in a fresh Python: ``{"outcome": "accepted:
    <repr>" | "refused: <message>", "seconds": …, "peak_growth_mb": …}`` for the action alone."""
    script = "\n".join([
        "import json, resource, time",
        "from gera.errors import GeraError",
        textwrap.dedent(setup),
        "def status_kb(field):",
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(field))",
        f"limit = (status_kb('VmSize:') + {guard_mb} * 1024) * 1024",
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))",
        # Reset the peak (VmHWM) to the current RSS, so imports' transients do not hide growth.
        "open('/proc/self/clear_refs', 'w').write('5')",
        "before = status_kb('VmRSS:')",
        "start = time.perf_counter()",
        "try:",
        f"    outcome = 'accepted: ' + repr({action})[:200]",
        "except GeraError as err:",
        "    outcome = 'refused: ' + str(err)",
        "seconds = time.perf_counter() - start",
        "grown = (status_kb('VmHWM:') - before) / 1024",
        "print(json.dumps({'outcome': outcome, 'seconds': round(seconds, 3),",
        "                  'peak_growth_mb': round(grown, 1)}))",
    ])
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\n[measured] {action}: {result}")
    return result


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def tone(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


# --- on-disk locations --------------------------------------------------------------------------

def test_locations_follow_the_environment(tmp_path, monkeypatch):
    for var in ("GERA_CACHE_DIR", "GERA_MODELS_DIR", "GERA_SPEECH_DIR", "GERA_UPLOADS_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert paths.embeddings_root().parts[-3:] == (".cache", "gera", "embeddings")
    monkeypatch.setenv("GERA_CACHE_DIR", str(tmp_path / "cache" / "embeddings"))
    assert paths.embeddings_root() == tmp_path / "cache" / "embeddings"
    assert paths.models_root() == tmp_path / "cache" / "models"  # siblings move with the cache
    assert paths.speech_root() == tmp_path / "cache" / "speech"
    monkeypatch.setenv("GERA_MODELS_DIR", str(tmp_path / "pinned-models"))
    monkeypatch.setenv("GERA_SPEECH_DIR", str(tmp_path / "voices"))
    monkeypatch.setenv("GERA_UPLOADS_DIR", str(tmp_path / "uploads"))
    assert paths.models_root() == tmp_path / "pinned-models"
    assert paths.speech_root() == tmp_path / "voices"
    assert paths.uploads_root() == tmp_path / "uploads"


def test_nothing_imports_the_encoders_to_read_audio_or_find_folders():
    # gera.audio and gera.paths are leaves: loading a dataset must not drag in torch and the
    # encoders (the old gera.data → gera.encoders.speech → gera.cache → gera.data cycle).
    code = ("import sys, gera.data, gera.audio, gera.paths, gera.images; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('gera.encoders')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# --- audio bombs --------------------------------------------------------------------------------

def silent_flac(path: Path, channels: int, seconds: int, rate: int = 8000) -> Path:
    """An hour of silence is a few hundred KB of FLAC, and gigabytes once decoded."""
    block = np.zeros((rate * 60, channels), np.int16)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=channels, format="FLAC",
                             subtype="PCM_16") as fh:
        for _ in range(seconds // 60):
            fh.write(block)
    return path


@pytest.fixture(scope="module")
def audio_bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio-bombs")
    many_channels = silent_flac(root / "eight-channels.flac", channels=8, seconds=3600)
    long_mono = silent_flac(root / "hour.flac", channels=1, seconds=3600)
    # The same hour with a header that does not say how long it is (FLAC allows "unknown"):
    # only a bounded decode can refuse it.
    data = bytearray(long_mono.read_bytes())
    fields = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, 36-bit length
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    unknown_length = root / "hour-unknown-length.flac"
    unknown_length.write_bytes(bytes(data))
    assert many_channels.stat().st_size < 1024 ** 2 and long_mono.stat().st_size < 1024 ** 2
    return {"channels": many_channels, "long": long_mono, "unknown": unknown_length}


@pytest.mark.parametrize("kind, problem", [
    ("channels", "8-channel audio; at most 2"),
    ("long", "3600.0 s long, over the 30 s limit"),
    ("unknown", "more than 31.0 s long, over the 30 s limit"),
])
def test_audio_bombs_are_refused_fast_with_bounded_memory(audio_bombs, kind, problem):
    result = measure("from gera.audio import load_audio",
                     f"load_audio({str(audio_bombs[kind])!r})")
    assert result["outcome"].startswith("refused: ") and problem in result["outcome"]
    assert result["seconds"] < 1.0
    assert result["peak_growth_mb"] < 64  # decoding it all: 0.9 GB (8 channels) / 115 MB


def test_an_audio_bomb_in_a_folder_is_named_relative_to_the_folder(tmp_path, audio_bombs):
    (tmp_path / "clips").mkdir()
    rows = []
    for i in range(6):
        soundfile.write(str(tmp_path / f"clips/{i}.wav"), tone(0.3 + 0.1 * i), SAMPLE_RATE)
        rows.append([f"clips/{i}.wav", f"tone number {i}"])
    (tmp_path / "clips/bomb.flac").write_bytes(audio_bombs["channels"].read_bytes())
    rows.append(["clips/bomb.flac", "an hour of eight channels"])
    write_csv(tmp_path / "transcripts.csv", ["audio", "transcript"], rows)
    result = measure("from gera.data import get_task", f"get_task('folder:{tmp_path}')")
    assert "audio 'clips/bomb.flac' is 8-channel audio" in result["outcome"]
    assert "1 problem(s)" in result["outcome"]
    assert str(tmp_path / "clips") not in result["outcome"]
    assert result["seconds"] < 5 and result["peak_growth_mb"] < 64


def test_audio_errors_can_name_the_file_without_its_path(tmp_path):
    path = tmp_path / "upload-3f2a.wav"
    soundfile.write(str(path), np.zeros(8000, np.float32), 8000)
    with pytest.raises(GeraError) as err:
        load_audio(path, "The clip")
    assert str(err.value).startswith("The clip is silent") and str(tmp_path) not in str(err.value)


# --- paths in a user's CSV ----------------------------------------------------------------------

def _outside_rows(tmp_path: Path, root: Path, suffix: str) -> list[str]:
    """Paths that all lead out of ``root``: existing and missing, relative, absolute, a link."""
    (tmp_path / f"secret{suffix}").write_bytes(b"server data")
    (root / f"link{suffix}").symlink_to(tmp_path / f"secret{suffix}")
    return [f"../secret{suffix}", f"../missing{suffix}", "/etc/hostname", "/no/such/file",
            f"link{suffix}", f"sub/../../secret{suffix}"]


@pytest.mark.parametrize("layout", ["images", "audio"])
def test_csv_paths_outside_the_folder_are_refused_alike(tmp_path, layout):
    root = tmp_path / "pairs"
    (root / "files").mkdir(parents=True)
    suffix = ".png" if layout == "images" else ".wav"
    good = []
    for i in range(6):
        name = f"files/{i}{suffix}"
        if layout == "images":
            Image.new("RGB", (20 + i, 20), (40 * i, 0, 0)).save(root / name)
        else:
            soundfile.write(str(root / name), tone(0.3 + 0.1 * i), SAMPLE_RATE)
        good.append(name)
    (root / f"inner-link{suffix}").symlink_to(root / good[0])  # a link that stays inside is fine
    outside = _outside_rows(tmp_path, root, suffix)
    rows = [[name, f"pair {i}"] for i, name in enumerate(good + [f"inner-link{suffix}"])]
    rows += [[name, f"escape {i}"] for i, name in enumerate(outside)]
    header = ["image", "caption"] if layout == "images" else ["audio", "transcript"]
    csv_name = "captions.csv" if layout == "images" else "transcripts.csv"
    write_csv(root / csv_name, header, rows)

    with pytest.raises(GeraError) as err:
        get_task(f"folder:{root}")
    message = str(err.value)
    assert f"{len(outside)} problem(s)" in message
    media = header[0]
    for name in outside:
        assert f"{media} '{name}' is outside the dataset folder" in message
    # Existing or not, inside /etc or beside the folder: one answer, nothing learnt.
    assert "not found" not in message and "server data" not in message
    assert str(tmp_path / "secret") not in message


def test_a_csv_that_links_out_of_the_folder_is_refused(tmp_path):
    root = tmp_path / "pairs"
    root.mkdir()
    (tmp_path / "elsewhere.csv").write_text("image,caption\n")
    (root / "captions.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(GeraError, match="outside the dataset folder"):
        get_task(f"folder:{root}")


# --- image bombs --------------------------------------------------------------------------------

def black_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit black PNG written row by row: zero rows compress ~1000:1, so 20k × 20k pixels
    (1.2 GB as RGB) is about 50 KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def image_bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-bombs")
    huge = black_png(root / "20k.png", 20_000, 20_000)  # past PIL's own bomb limit
    big = black_png(root / "48mp.png", 8_000, 6_000)  # under PIL's limit, over ours
    assert huge.stat().st_size < 200_000 and big.stat().st_size < 100_000
    return {"huge": huge, "big": big}


@pytest.mark.parametrize("kind, size", [("huge", ""), ("big", "8000 × 6000 pixels, ")])
def test_image_bombs_are_refused_fast_with_bounded_memory(image_bombs, kind, size):
    result = measure("from gera.images import open_image", f"open_image({str(image_bombs[kind])!r})")
    assert result["outcome"].startswith("refused: ")
    assert f"is too large ({size}over the 40 megapixel limit)" in result["outcome"]
    assert result["seconds"] < 1.0 and result["peak_growth_mb"] < 64


def test_image_bombs_in_a_folder_and_as_a_query(tmp_path, image_bombs):
    from gera.ui.retrieval import load_query_image

    (tmp_path / "img").mkdir()
    rows = []
    for i in range(6):
        Image.new("RGB", (20 + i, 20)).save(tmp_path / f"img/{i}.png")
        rows.append([f"img/{i}.png", f"picture {i}"])
    (tmp_path / "img/bomb.png").write_bytes(image_bombs["huge"].read_bytes())
    rows.append(["img/bomb.png", "mostly black"])
    write_csv(tmp_path / "captions.csv", ["image", "caption"], rows)
    with pytest.raises(GeraError, match="image 'img/bomb.png' is too large"):
        get_task(f"folder:{tmp_path}")
    with pytest.raises(GeraError) as err:
        load_query_image(image_bombs["huge"])
    assert str(err.value).startswith("The uploaded image is too large")
    assert str(image_bombs["huge"].parent) not in str(err.value)


def test_only_the_documented_image_formats_are_decoded(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.tiff")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.ico")
    for name in ("a.tiff", "a.ico"):
        with pytest.raises(GeraError, match="not an image in a readable format"):
            open_image(tmp_path / name)
    for fmt in ("png", "jpeg", "webp", "gif", "bmp"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / f"a.{fmt}")
        assert open_image(tmp_path / f"a.{fmt}").size == (8, 8)


def test_images_are_shrunk_upright_and_rgb_on_load(tmp_path):
    photo = Image.new("RGB", (3000, 2000), "blue")
    exif = photo.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to show upright
    photo.save(tmp_path / "photo.jpg", exif=exif)
    loaded = open_image(tmp_path / "photo.jpg")
    assert loaded.mode == "RGB" and max(loaded.size) == MAX_SIDE
    assert loaded.size == (683, 1024)  # shrunk, then turned upright
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    clear.save(tmp_path / "clear.png")
    assert open_image(tmp_path / "clear.png").getpixel((5, 5)) == (255, 255, 255)


def photo_folder(root: Path, n: int, size=(2048, 1536)) -> Path:
    """``n`` distinct photo-sized JPEGs: one encoded image, each copy made distinct by a JPEG
    comment segment (same pixels, different bytes, so different items)."""
    (root / "photos").mkdir(parents=True)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    ImageDraw.Draw(image).ellipse((300, 200, 1300, 1000), fill=(200, 80, 40))
    image.save(root / "template.jpg", quality=85)
    data = (root / "template.jpg").read_bytes()
    (root / "template.jpg").unlink()
    rows = []
    for i in range(n):
        comment = f"photo {i}".encode()
        segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
        (root / f"photos/{i}.jpg").write_bytes(data[:2] + segment + data[2:])
        rows.append([f"photos/{i}.jpg", f"photo number {i}"])
    write_csv(root / "captions.csv", ["image", "caption"], rows)
    return root


def test_a_folder_of_1024_photos_embeds_within_a_memory_bound(tmp_path):
    folder = photo_folder(tmp_path / "photos", 1024)
    setup = f"""
        import numpy as np
        from gera.cache import EmbeddingCache
        from gera.data import get_task
        from gera.encoders.base import Encoder

        class CentreColour(Encoder):
            name, modality, dim, version = "centre-colour", "image", 3, "1"

            def embed(self, items, batch_size=64, progress=None):
                return np.array([i.getpixel((i.width // 2, i.height // 2)) for i in items], np.float32)

        task = get_task("folder:{folder}")
        cache = EmbeddingCache({str(tmp_path / 'cache')!r})
    """
    result = measure(setup, "cache.embed(CentreColour(), task.a, np.arange(len(task.a))).shape",
                     timeout=600)
    # Unbatched, the chunk's 1,024 full-size 3-megapixel photos alone would hold 9.7 GB.
    assert result["outcome"] == "accepted: (1024, 3)"
    assert result["peak_growth_mb"] < 400


# --- task options a visitor may set -------------------------------------------------------------

@pytest.mark.parametrize("task, text, problem", [
    ("fashion-mnist", "data_dir=/etc", "'data_dir' cannot be set here"),
    ("emoji", "font_path=/usr/share/fonts/x.ttf", "'font_path' cannot be set here"),
    ("spoken-words", "speech_dir=/tmp/x", "'speech_dir' cannot be set here"),
    ("folder:/srv/pairs", "templates={:>999999999}", "'templates' cannot be set here"),
    ("spoken-words", "test_set={:>999999999}", "test_set must be one of all, words"),
    ("fashion-mnist", "n_test=99", "n_test must be a whole number from 100 to 10000"),
    ("fashion-mnist", "n_test=10001", "from 100 to 10000"),
    ("fashion-mnist", "n_test=2²", "from 100 to 10000"),
    ("fashion-mnist", "n_test=٣٠٠", "from 100 to 10000"),  # Arabic-Indic digits: int() takes them
    ("fashion-mnist", "n_test=2_000", "from 100 to 10000"),
    ("folder:/srv/pairs", "test_fraction=nan", "a number from 0.1 to 0.5"),
    ("emoji", "colour=red", "'colour' cannot be set here"),
    ("emoji", "seed=1, seed=2", "given twice"),
    ("emoji", "seed", "must look like name=value"),
    ("cifar10", "seed=1", "Unknown task 'cifar10'"),
])
def test_public_task_options_refuse_all_but_the_allow_list(task, text, problem):
    from gera.data import parse_public_task_options

    with pytest.raises(GeraError, match=problem) as err:
        parse_public_task_options(task, text)
    if "cannot be set" in problem:  # the message lists what may be set, with ranges
        assert "accepts:" in str(err.value)
        assert " from " in str(err.value) or "one of" in str(err.value)
    assert "/srv/pairs" not in str(err.value)


def test_public_task_options_accept_the_allow_list():
    from gera.data import parse_public_task_options

    assert parse_public_task_options("fashion-mnist", "n_test=2000") == {"n_test": 2000}
    assert parse_public_task_options("emoji", " seed=3 , held_out_fraction=0.3,") == \
        {"seed": 3, "held_out_fraction": 0.3}
    assert parse_public_task_options("spoken-words", "engines=piper+espeak-ng, test_set=words") \
        == {"engines": ("espeak-ng", "piper"), "test_set": "words"}
    assert parse_public_task_options("folder:/any", "") == {}


def test_no_public_option_is_a_path_or_a_template():
    import inspect

    from gera.data import _BUILTIN
    from gera.data.folder import FolderTask
    from gera.data.options import Choice, DecimalNumber, WholeNumber

    dangerous = {"path", "data_dir", "font_path", "speech_dir", "sounds_dir", "transcripts",
                 "templates"}
    for task in [*_BUILTIN.values(), FolderTask]:
        parameters = inspect.signature(task).parameters
        assert task.public_options, task
        for key, option in task.public_options.items():
            assert key in parameters and key not in dangerous, (task, key)
            assert isinstance(option, (WholeNumber, DecimalNumber, Choice)), (task, key)


def test_the_cli_keeps_full_freedom():
    from gera.data import parse_task_options

    assert parse_task_options(["data_dir=/data/fmnist", "n_test=3"]) == \
        {"data_dir": "/data/fmnist", "n_test": 3}


# --- encoders a visitor may pick, and how hub models are loaded ---------------------------------

OFFERED = ["mobilenet_v2", "minilm", "hf:gera-test/small-bert", "openclip:ViT-B-32:openai"]


@pytest.mark.parametrize("name, canonical", [
    ("mobilenet_v2:112", "mobilenet_v2"),  # one spelling per encoder
    (" hf:gera-test/small-bert ", "hf:gera-test/small-bert"),
    ("openclip:ViT-B-32:openai", "openclip:ViT-B-32:openai"),
])
def test_check_allowed_gives_the_canonical_name(name, canonical):
    from gera.encoders import check_allowed

    assert check_allowed(name, OFFERED) == canonical


@pytest.mark.parametrize("name, problem", [
    ("hf:/etc", "loads model files from this machine"),
    ("hf:./models/bert", "loads model files from this machine"),
    ("hf:~/models/bert", "loads model files from this machine"),
    ("hf:gera-test/small-bert/../../x", "loads model files from this machine"),
    ("openclip:local-dir:/srv/models/clip", "loads model files from this machine"),
    ("openclip:ViT-B-32:/srv/weights.pt", "loads model files from this machine"),
    ("efficientnet_lite0", "is not offered here"),
    ("hf:gera-test/other", "is not offered here"),
    ("resnet9000", "is not offered here"),
    ("mobilenet_v2:huge", "is not offered here"),
])
def test_check_allowed_refuses_with_the_list(name, problem):
    from gera.encoders import check_allowed

    with pytest.raises(GeraError, match=problem) as err:
        check_allowed(name, OFFERED)
    assert "Choose one of: " + ", ".join(OFFERED) in str(err.value)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised two-layer BERT with a tokenizer, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "dog"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(path)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    assert (path / "model.safetensors").is_file()
    return path


def test_check_allowed_never_lets_a_local_folder_through(tiny_bert):
    from gera.encoders import check_allowed

    with pytest.raises(GeraError, match="from this machine"):
        check_allowed(f"hf:{tiny_bert}", [f"hf:{tiny_bert}", "minilm"])


class HubLoads:
    """Stands in for the Hub: every transformers ``from_pretrained`` is recorded, Hub ids are
    served from local folders, and ``model_info`` reports the sizes given."""

    CLASSES = ("AutoConfig", "AutoModel", "AutoTokenizer", "AutoImageProcessor",
               "AutoFeatureExtractor")

    def __init__(self, monkeypatch, folders: dict[str, Path], sizes: dict[str, dict[str, int]],
                 reachable: bool):
        import huggingface_hub
        import transformers
        from huggingface_hub import constants

        import gera.encoders.hub as hub

        self.calls: list[tuple[str, str, dict]] = []
        self.sizes_asked: list[str] = []
        self._depth = 0
        monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: reachable)
        for cls_name in self.CLASSES:
            cls = getattr(transformers, cls_name)
            original = cls.from_pretrained

            def record(source, *args, _name=cls_name, _original=original, **kwargs):
                # Checked during the load: the library-wide switch is never flipped.
                assert constants.HF_HUB_OFFLINE is False
                if not self._depth:  # gera's calls, not transformers' calls to itself
                    self.calls.append((_name, str(source), kwargs))
                self._depth += 1
                try:
                    return _original(str(folders.get(str(source), source)), *args, **kwargs)
                finally:
                    self._depth -= 1

            monkeypatch.setattr(cls, "from_pretrained", record)

        def model_info(api, repo_id, files_metadata=False, **kwargs):
            assert files_metadata
            self.sizes_asked.append(repo_id)
            siblings = [SimpleNamespace(rfilename=f, size=n) for f, n in sizes[repo_id].items()]
            return SimpleNamespace(siblings=siblings)

        monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)


def test_hub_models_load_without_remote_code_or_pickles(monkeypatch, tiny_bert):
    from gera.encoders import get_encoder

    loads = HubLoads(monkeypatch, {"gera-test/small-bert": tiny_bert},
                     {"gera-test/small-bert": {"model.safetensors": 500_000, "vocab.txt": 100}},
                     reachable=True)
    encoder = get_encoder("hf:gera-test/small-bert", device="cpu")
    assert encoder.embed(["a photo of a cat"]).shape == (1, 32)
    assert {name for name, _, _ in loads.calls} == {"AutoConfig", "AutoModel", "AutoTokenizer"}
    for name, source, kwargs in loads.calls:
        assert source == "gera-test/small-bert"
        assert kwargs["trust_remote_code"] is False and kwargs["local_files_only"] is False
        if name == "AutoModel":
            assert kwargs["use_safetensors"] is True
    assert set(loads.sizes_asked) == {"gera-test/small-bert"}  # asked before downloading


def test_pickled_weights_are_refused(monkeypatch, tmp_path, tiny_bert):
    import shutil

    import torch
    from safetensors.torch import load_file

    from gera.encoders import get_encoder

    pickled = tmp_path / "pickled-bert"
    shutil.copytree(tiny_bert, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(GeraError, match="could not be loaded"):
        get_encoder(f"hf:{pickled}", device="cpu")
    HubLoads(monkeypatch, {}, {"gera-test/pickled": {"pytorch_model.bin": 500_000}},
             reachable=True)
    with pytest.raises(GeraError, match="no .safetensors weights"):
        get_encoder("hf:gera-test/pickled", device="cpu")


def test_a_model_over_the_size_limit_is_refused_before_any_download(monkeypatch, tiny_bert):
    from gera.encoders import get_encoder
    from gera.encoders.hub import check_download_size

    sizes = {"gera-test/huge": {"model-00001-of-00002.safetensors": 4 * 10 ** 9,
                                "model-00002-of-00002.safetensors": 3 * 10 ** 9,
                                "pytorch_model.bin": 7 * 10 ** 9},
             "gera-test/medium": {"model.safetensors": 10 ** 9}}
    loads = HubLoads(monkeypatch, {"gera-test/medium": tiny_bert}, sizes, reachable=True)
    with pytest.raises(GeraError, match=r"holds 7.0 GB of weights, over the 2.0 GB limit"):
        get_encoder("hf:gera-test/huge", device="cpu")
    assert loads.calls == []  # nothing was fetched, not even the config
    monkeypatch.setenv("GERA_MAX_MODEL_BYTES", str(500 * 10 ** 6))
    with pytest.raises(GeraError, match=r"1.0 GB of weights, over the 0.5 GB limit"):
        get_encoder("hf:gera-test/medium", device="cpu")
    assert check_download_size("x", "gera-test/medium", max_bytes=2 * 10 ** 9) == 10 ** 9


def test_local_folders_are_not_size_checked(monkeypatch, tiny_bert):
    from gera.encoders import get_encoder

    loads = HubLoads(monkeypatch, {}, {}, reachable=True)
    monkeypatch.setenv("GERA_MAX_MODEL_BYTES", "1")
    assert get_encoder(f"hf:{tiny_bert}", modality="text", device="cpu").dim == 32
    assert loads.sizes_asked == []


def test_an_offline_load_is_offline_for_that_call_only(monkeypatch, tiny_bert):
    from huggingface_hub import constants

    from gera.encoders import get_encoder

    before = constants.HF_HUB_OFFLINE
    loads = HubLoads(monkeypatch, {"gera-test/cached-bert": tiny_bert}, {}, reachable=False)
    encoder = get_encoder("hf:gera-test/cached-bert", device="cpu")
    assert encoder.dim == 32
    assert loads.calls and all(kwargs["local_files_only"] is True for _, _, kwargs in loads.calls)
    assert loads.sizes_asked == []  # nothing to download, nothing to ask
    assert constants.HF_HUB_OFFLINE is before


def test_an_offline_open_clip_load_uses_the_cache_for_that_call_only(monkeypatch, tmp_path):
    import huggingface_hub
    import open_clip
    from huggingface_hub import constants
    from safetensors.torch import save_file

    import gera.encoders.hub as hub
    from gera.encoders import get_encoder

    model_cfg = {"embed_dim": 16,
                 "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
                 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32,
                              "heads": 2, "layers": 1}}
    (tmp_path / "gera-offline-clip.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(tmp_path / "gera-offline-clip.json")
    snapshot = tmp_path / "snapshot"  # what a cached hf-hub:gera-test/tiny-clip looks like
    snapshot.mkdir()
    (snapshot / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    save_file(open_clip.create_model("gera-offline-clip").state_dict(),
              snapshot / "open_clip_model.safetensors")

    asked = []

    def cached_snapshot(repo_id, local_files_only=False, **kwargs):
        assert constants.HF_HUB_OFFLINE is False
        asked.append((repo_id, local_files_only))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached_snapshot)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    before = constants.HF_HUB_OFFLINE
    encoder = get_encoder("openclip:hf-hub:gera-test/tiny-clip", device="cpu")
    assert encoder.embed([Image.new("RGB", (40, 40))]).shape == (1, 16)
    assert asked == [("gera-test/tiny-clip", True)] and constants.HF_HUB_OFFLINE is before


# --- the embedding cache, shared by many users ---------------------------------------------------

class HashEncoder(Encoder):
    """A text 'encoder' with deterministic 4-d rows from a hash; records what it embeds, and
    gives NaN rows for the texts in ``broken``."""

    name, modality, dim, version = "hash", "text", 4, "1"

    def __init__(self, broken=()):
        self.embedded: list[str] = []
        self.broken = set(broken)

    def embed(self, items, batch_size=64, progress=None):
        items = list(items)
        self.embedded.extend(items)
        rows = [np.full(4, np.nan, np.float32) if t in self.broken else hashed(t) for t in items]
        return np.stack(rows) if rows else np.empty((0, 4), np.float32)


def hashed(text: str) -> np.ndarray:
    import hashlib

    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], np.uint32) \
        .astype(np.float32) / 2 ** 32


def texts(n: int, prefix: str = "item"):
    from gera.data.base import ItemSet

    return ItemSet("text", [f"test:{prefix}:{i}" for i in range(n)],
                   lambda indices: [f"{prefix} {i}" for i in indices])


def chunk_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/chunk-*.npz"))


@pytest.mark.parametrize("code", ["EMFILE", "EACCES", "ENOSPC"])
def test_a_chunk_unreadable_for_a_passing_reason_is_kept(tmp_path, monkeypatch, code):
    import errno

    import gera.cache as cache_module
    from gera.cache import EmbeddingCache

    encoder, items = HashEncoder(), texts(10)
    EmbeddingCache(tmp_path, chunk_items=5).embed(encoder, items, np.arange(10))
    kept = chunk_files(tmp_path)
    assert len(kept) == 2
    cache = EmbeddingCache(tmp_path)
    assert cache.count(encoder) == 10  # indexed while readable
    number = getattr(errno, code)

    def cannot_read(path, *args, **kwargs):
        raise OSError(number, os.strerror(number), str(path))

    monkeypatch.setattr(cache_module.np, "load", cannot_read)
    with pytest.warns(RuntimeWarning, match="Could not read .* the file is kept"):
        out = cache.embed(encoder, items, np.arange(10))  # reading a chunk fails
    np.testing.assert_array_equal(out, np.stack([hashed(f"item {i}") for i in range(10)]))
    monkeypatch.setattr(cache_module, "_STORES", {})  # a new process: indexing fails
    with pytest.warns(RuntimeWarning, match="Could not read"):
        EmbeddingCache(tmp_path).count(encoder)
    assert all(path.exists() for path in kept)
    monkeypatch.undo()
    monkeypatch.setattr(cache_module, "_STORES", {})
    for path in set(chunk_files(tmp_path)) - set(kept):
        path.unlink()  # only the kept chunks are left to serve the items
    encoder.embedded.clear()
    EmbeddingCache(tmp_path).embed(encoder, items, np.arange(10))
    assert encoder.embedded == []


def test_concurrent_writers_and_a_cleaner_keep_the_index_whole(tmp_path):
    """Six app users embedding at once while chunks vanish (another process evicts): no crash,
    and every chunk on disk is in the index. Without locks this fails nearly every run
    ('dictionary changed size during iteration', lost entries)."""
    import random
    import threading

    from gera.cache import EmbeddingCache

    encoder, cache = HashEncoder(), EmbeddingCache(tmp_path, chunk_items=1)
    errors, stop = [], threading.Event()

    def writer(w: int):
        try:
            items = texts(80, prefix=f"writer{w}")
            for i in range(80):
                cache.embed(encoder, items, np.array([i]), progress=lambda *_: None)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    def cleaner():
        rng = random.Random(0)
        try:
            while not stop.is_set():
                present = list(cache.folder(encoder).glob("chunk-*.npz"))
                if present:
                    rng.choice(present).unlink(missing_ok=True)
                cache.count(encoder)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so races show up in a short test
    try:
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        sweeper = threading.Thread(target=cleaner)
        for thread in [*threads, sweeper]:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        sweeper.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    store = cache._store(encoder)
    for path in chunk_files(tmp_path):
        with np.load(path) as npz:
            assert all(str(key) in store.index for key in npz["keys"]), path.name


def test_writes_wait_for_the_cross_process_cache_lock(tmp_path):
    import fcntl
    import threading
    import time

    from gera.cache import LOCK_NAME, EmbeddingCache

    encoder, cache = HashEncoder(), EmbeddingCache(tmp_path)
    cache.embed(encoder, texts(1), np.arange(1))  # the folder exists
    with open(tmp_path / LOCK_NAME, "ab") as other_process:  # another open = another holder
        fcntl.flock(other_process, fcntl.LOCK_EX)
        writer = threading.Thread(target=cache.embed, args=(encoder, texts(3), np.arange(1, 3)),
                                  kwargs={"progress": lambda *_: None})
        writer.start()
        time.sleep(0.5)
        assert writer.is_alive() and len(chunk_files(tmp_path)) == 1  # waiting to write
        fcntl.flock(other_process, fcntl.LOCK_UN)
    writer.join(10)
    assert not writer.is_alive() and len(chunk_files(tmp_path)) == 2


def test_the_cache_cap_evicts_the_least_recently_used_chunks(tmp_path, monkeypatch):
    import time

    from gera.cache import EmbeddingCache

    encoder, items = HashEncoder(), texts(8)
    EmbeddingCache(tmp_path, chunk_items=2).embed(encoder, items, np.arange(2))
    size = chunk_files(tmp_path)[0].stat().st_size  # every chunk of 2 rows is this size
    cache = EmbeddingCache(tmp_path, chunk_items=2, max_bytes=3 * size)
    for start in (2, 4):  # chunks {0,1}, {2,3}, {4,5}: at the cap
        time.sleep(0.02)
        cache.embed(encoder, items, np.arange(start, start + 2))
    time.sleep(0.02)
    cache.embed(encoder, items, np.arange(2))  # a read: {0,1} is now the most recently used
    time.sleep(0.02)
    encoder.embedded.clear()
    cache.embed(encoder, items, np.arange(6, 8))  # a fourth chunk: one must go
    assert sum(p.stat().st_size for p in chunk_files(tmp_path)) <= 3 * size
    assert len(chunk_files(tmp_path)) == 3
    encoder.embedded.clear()
    cache.embed(encoder, items, np.arange(8))
    assert encoder.embedded == ["item 2", "item 3"]  # the least recently used chunk was evicted

    monkeypatch.setenv("GERA_CACHE_MAX_BYTES", "123456")
    assert EmbeddingCache(tmp_path).max_bytes == 123456
    monkeypatch.delenv("GERA_CACHE_MAX_BYTES")
    assert EmbeddingCache(tmp_path).max_bytes is None  # unset: unbounded


def test_nan_embeddings_never_enter_the_cache(tmp_path):
    from gera.cache import EmbeddingCache

    encoder, items = HashEncoder(broken={"item 3", "item 7"}), texts(10)
    with pytest.raises(GeraError, match=r"NaN or infinite values for 2 item\(s\) \(item 3 first\)"):
        EmbeddingCache(tmp_path).embed(encoder, items, np.arange(10))
    for path in chunk_files(tmp_path):
        with np.load(path) as npz:
            assert np.isfinite(npz["emb"]).all()
            assert {"test:item:3", "test:item:7"}.isdisjoint(map(str, npz["keys"]))
    assert EmbeddingCache(tmp_path).count(encoder) == 8  # the good rows were kept


# --- uploads ------------------------------------------------------------------------------------

def pairs_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name) if name in ("", ".") else name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symlink
            zf.writestr(info, target)
    return path


def png_bytes(colour: tuple[int, int, int], width: int = 20) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (width, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()


def good_members(n: int = 6) -> dict[str, bytes]:
    members = {f"pairs/img/{i}.png": png_bytes((30 * i, 0, 0), 20 + i) for i in range(n)}
    rows = "".join(f"img/{i}.png,picture {i}\n" for i in range(n))
    members["pairs/captions.csv"] = ("image,caption\n" + rows).encode()
    return members


def test_an_empty_member_name_is_a_clear_error(tmp_path):
    from gera.ui.uploads import unpack_pairs_zip

    upload = pairs_zip(tmp_path / "empty-name.zip", {**good_members(), "": b"x"})
    with pytest.raises(GeraError, match="an entry with an empty name"):
        unpack_pairs_zip(upload, tmp_path / "uploads")
    assert not any((tmp_path / "uploads").iterdir())


@pytest.mark.parametrize("case, problem", [
    ("escaping member", "outside its own folder"),
    ("link member", "holds a link"),
    ("too big", "unpacks to more than"),
    ("no csv", "holds no captions.csv"),
    ("csv path outside", "'../../secret.png' is outside the dataset folder"),
    ("csv path missing", "'img/missing.png' is not found"),
    ("not a zip", "is not a readable .zip"),
])
def test_a_refused_upload_leaves_nothing_behind(tmp_path, monkeypatch, case, problem):
    import gera.ui.uploads as uploads

    members = good_members()
    links = None
    if case == "escaping member":
        members["../evil.txt"] = b"x"
    elif case == "link member":
        links = {"pairs/img/link.png": "/etc/hostname"}
    elif case == "too big":
        monkeypatch.setattr(uploads, "MAX_UNPACKED_BYTES", 300)
    elif case == "no csv":
        del members["pairs/captions.csv"]
    elif case == "csv path outside":
        members["pairs/captions.csv"] += b"../../secret.png,a secret\n"
        (tmp_path / "uploads").mkdir()
        (tmp_path / "secret.png").write_bytes(png_bytes((1, 2, 3)))
    elif case == "csv path missing":
        members["pairs/captions.csv"] += b"img/missing.png,not there\n"
    upload = pairs_zip(tmp_path / f"{case}.zip", members, links)
    if case == "not a zip":
        upload.write_bytes(b"PK\x03\x04 truncated")
    root = tmp_path / "uploads"
    with pytest.raises(GeraError, match=problem) as err:
        uploads.unpack_pairs_zip(upload, root)
    assert str(root) not in str(err.value)
    assert not root.exists() or list(root.iterdir()) == []  # no staging, no dest folder


def test_an_upload_is_kept_until_removed_or_swept(tmp_path):
    import time

    from gera.ui.uploads import remove_upload, sweep_uploads, unpack_pairs_zip

    root = tmp_path / "uploads"
    first = unpack_pairs_zip(pairs_zip(tmp_path / "a.zip", good_members(6)), root)
    second = unpack_pairs_zip(pairs_zip(tmp_path / "b.zip", good_members(7)), root)
    assert first.name == "pairs" and first.parent.parent == root
    assert unpack_pairs_zip(tmp_path / "a.zip", root) == first  # one folder per distinct zip
    assert len(get_task(f"folder:{first}").a) == 6

    (tmp_path / "keep-me").mkdir()
    assert remove_upload(tmp_path / "keep-me", root) is False  # never outside the uploads
    assert remove_upload(root, root) is False
    assert (tmp_path / "keep-me").is_dir()
    assert remove_upload(first, root) is True
    assert not first.parent.exists() and second.is_dir()

    stale = root / ".unpacking-crashed"  # left by a crash mid-unpack
    stale.mkdir()
    outside = tmp_path / "outside-target"
    outside.mkdir()
    (root / "a-link").symlink_to(outside)
    old = time.time() - 7200
    for path in (second.parent, stale):
        os.utime(path, (old, old))
    os.utime(root / "a-link", (old, old), follow_symlinks=False)
    fresh = unpack_pairs_zip(pairs_zip(tmp_path / "c.zip", good_members(8)), root)
    removed = sweep_uploads(root, max_age_s=3600)
    assert sorted(p.name for p in removed) == sorted([second.parent.name, stale.name, "a-link"])
    assert fresh.is_dir() and outside.is_dir()  # recent uploads and link targets stay
    assert sweep_uploads(tmp_path / "never-made", 60) == []
