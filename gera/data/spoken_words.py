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
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gera.data.base import ItemSet, Split, Task, ZeroShot
from gera.data.common import (check_budget, index_array, n_val_pairs, pairs_array, prompts_for,
                              text_key)
from gera.data.emoji_render import DEFAULT_FONT, font_inventory
from gera.data.fashion_mnist import CLASS_NAMES as FASHION_NAMES
from gera.audio import load_audio
from gera.data.options import Choice
from gera.data.tts import ENGINES, Entry, Synthesiser, all_voices, engine_of, tts_key
from gera.errors import GeraError
from gera.paths import speech_root

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ZERO_SHOT_TEMPLATES = ["{}", "the word {}", "someone saying {}"]
ZERO_SHOT_NOTE = ("zero_shot_* = real-voice word classification: 63 words (digits, letters, NATO) "
                  "said by the real test voice; the words themselves may be training texts or "
                  "in the text pool, so it measures transfer from synthetic to real speech, not "
                  "unseen classes")

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
# A text is spoken in training pairs and the speech pool by at most this many voices (the first
# of its fixed voice order, the validation voice skipped). It bounds what the task ever
# synthesises and embeds to about texts × (VOICES_PER_TEXT + 1) ≈ 9,300 clips (~4 min of
# whisper_base on 2 cores), plus each seed's validation clips (at most 178, by its held-out
# voice), however many budgets run, and sets the largest budget.
VOICES_PER_TEXT = 12
VOICE_ORDER_SEED = 20261126


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
    permutation of the vocabulary. The budget N counts clip–transcript pairs: training pairs
    cycle through the training texts, the k-th time with the text's k-th voice, so a budget beyond
    the number of training texts repeats texts with new voices, up to ``VOICES_PER_TEXT`` each.
    Each text has one fixed voice order for every seed, drawn engine first, so a text's first
    voice is as likely espeak-ng as flite as piper; piper has one voice and flite four, so the
    more voices a text has, the more of them are espeak-ng (about 63/29/8 % at 12).
    Unpaired A: clips of training or audio-only texts by their voices (never a paired clip).
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

    @property
    def word_classification(self) -> Optional[ZeroShot]:
        """The real-voice word classification every split tests (``zero_shot``), or None."""
        return self._zero_shot

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

    def _val_cap(self) -> int:
        """At most this many validation pairs: one clip each of distinct texts, by one voice."""
        return len(self.entries) // 4

    def _voices_per_text(self) -> int:
        """``VOICES_PER_TEXT``, or fewer where the engines have fewer voices (one is held out)."""
        return min(VOICES_PER_TEXT, len(self.voices) - 1)

    def max_budget(self) -> int:
        """Validation at its cap, plus every training text (half of the rest; the other half is
        the text pool) spoken by all of its voices."""
        return self._val_cap() + (len(self.entries) - self._val_cap()) // 2 * self._voices_per_text()

    @cached_property
    def _voice_orders(self) -> np.ndarray:
        """(texts, voices): each text's voices in a fixed random order, engine first, the same
        for every split, so all splits draw from one small grid of clips (and a text's pairs at
        budget N are among its pairs at any larger budget)."""
        rng = np.random.default_rng(VOICE_ORDER_SEED)
        everyone = np.arange(len(self.voices))
        weights = self._voice_weights(everyone)
        return np.stack([rng.choice(everyone, size=len(everyone), replace=False, p=weights)
                         for _ in self.entries])

    def _holdable_voices(self) -> np.ndarray:
        engines = [engine_of(v) for v in self.voices]
        return np.array([i for i, e in enumerate(engines) if engines.count(e) > 1], np.int64)

    def _voice_weights(self, voices: np.ndarray) -> np.ndarray:
        """Sampling weights over ``voices`` (a voice may repeat) that give each engine the same
        share, split evenly within it."""
        engine_ids = {e: i for i, e in enumerate(ENGINES)}
        engines = np.array([engine_ids[engine_of(self.voices[v])] for v in voices], np.int64)
        present, inverse, counts = np.unique(engines, return_inverse=True, return_counts=True)
        w = 1.0 / (len(present) * counts[inverse])
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
        # Each text's own voices: the first VOICES_PER_TEXT of its fixed order, bar the held-out one.
        orders = self._voice_orders
        per_text_cap = self._voices_per_text()
        text_voices = np.stack([row[row != val_voice][:per_text_cap] for row in orders])

        n_val = min(n_val_pairs(budget, val_fraction), self._val_cap())
        n_train = budget - n_val
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

        # Pairs cycle through the training texts; the k-th pair of a text is its k-th voice.
        per_text = np.bincount(np.arange(n_train) % n_train_texts, minlength=n_train_texts)
        if per_text.max() > per_text_cap:
            raise GeraError(f"spoken-words: {n_train} training pairs over {n_train_texts} texts "
                            f"need {per_text.max()} voices per text, but a text is spoken by at "
                            f"most {per_text_cap} here. Use a budget of at most "
                            f"{self.max_budget()} (or a smaller unpaired_b, or more engines).")
        train_a, train_b = [], []
        for text, count in zip(train_texts, per_text):
            train_a += [self.clip_index(int(text), int(v)) for v in text_voices[text, :count]]
            train_b += [int(text)] * count
        val_a = [self.clip_index(int(t), val_voice) for t in val_texts]

        candidates = (audio_texts[:, None] * n_voices + text_voices[audio_texts]).reshape(-1)
        candidate_w = self._voice_weights(text_voices[audio_texts].reshape(-1))
        free = ~np.isin(candidates, train_a)
        candidates, candidate_w = candidates[free], candidate_w[free]
        if unpaired_a is not None and not 0 <= unpaired_a <= len(candidates):
            raise GeraError(f"spoken-words can make {len(candidates)} unpaired clips at this "
                            f"budget (texts × their voices, paired clips excluded); asked for "
                            f"unpaired_a={unpaired_a}. Ask for at most {len(candidates)}.")
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
                  "clips_per_text": int(per_text.max()),
                  "n_unpaired_a": int(size_a), "n_unpaired_b": int(size_b),
                  "n_test_pairs": len(test_pairs), "n_test_transcripts": len(set(self.test_b)),
                  "n_zero_shot": 0 if self._zero_shot is None else len(self._zero_shot.labels),
                  "vocabulary": n_texts, "voices": n_voices,
                  "validation_voice": self.voices[val_voice],
                  "zero_shot_note": ZERO_SHOT_NOTE,
                  "note": "train/val/pool speech is synthetic; test speech is real (one human "
                          "speaker, Asterisk prompts) and never in a pair or pool"},
        )
