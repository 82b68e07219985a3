"""Safe on a public Space, library side: hostile uploads, names and options are refused fast,
with bounded memory and clear messages that show no server paths.

Memory is measured in a fresh Python per case (peak RSS growth while the case runs), with an
address-space guard so that a regression fails with MemoryError instead of taking the machine.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile

from gera import paths
from gera.audio import SAMPLE_RATE, load_audio
from gera.data import get_task
from gera.errors import GeraError

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
    code = ("import sys, gera.data, gera.audio, gera.paths; "
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
