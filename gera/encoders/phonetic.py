"""``phonetic``: a text encoder that embeds how a text SOUNDS, not what it means.

MiniLM puts "seven" near "eight" and "penguin" near "pig": its space is meaning. A speech encoder's
space is sound, so a few pairs must map sound onto meaning, and a transcript the pairs never
covered lands wherever its meaning does. This encoder gives the text side the same currency as
speech: espeak-ng's grapheme-to-phoneme rules turn the text into phonemes (``espeak-ng -q -x``,
en-us; no audio is made), and the embedding is a bag of phoneme n-grams (1 to 3 symbols, with word
boundaries) hashed into ``PHONETIC_DIM`` bins (``phonetic:<bins>`` for another number), square-root counts, unit length. It has no weights
and needs no network; each text is embedded on its own, so an item's embedding never depends on
the others (the embedding cache relies on that).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from gera.encoders.base import Encoder, Progress
from gera.errors import GeraError

# Hash bins. More bins, fewer collisions but larger text heads (a shipped checkpoint's first
# layer is dim × 512): results/spoken-words-1000-phonetic2048.txt measures 2048 against this.
PHONETIC_DIM = 1024
PHONETIC_VOICE = "en-us"
NGRAMS = (1, 2, 3)
_STRESS = str.maketrans("", "", "',")  # primary and secondary stress marks
_MAX_CHARS = 1000  # a text query longer than this is cut: espeak-ng reads it all otherwise


def phonemes(text: str) -> str:
    """``text`` as espeak-ng phoneme mnemonics (en-us), words separated by single spaces, stress
    marks dropped, e.g. "the letter b" → "D@2 lEt#3 bi:"."""
    # An argument list cannot hold NUL or lone surrogates: a visitor's text must not crash here.
    safe = text[:_MAX_CHARS].replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
    try:
        done = subprocess.run(["espeak-ng", "-q", "-x", "-v", PHONETIC_VOICE, "--", safe],
                              capture_output=True, text=True, timeout=30, check=True,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as err:
        raise GeraError(f"The phonetic text encoder could not run espeak-ng ({type(err).__name__}). "
                        "Install it: `apt-get install espeak-ng`.") from None
    return " ".join(done.stdout.translate(_STRESS).split())


def ngram_features(phones: str, dim: int = PHONETIC_DIM) -> np.ndarray:
    """Hashed bag of phoneme-symbol n-grams of ``phones`` (``#`` marks word edges; espeak-ng
    also uses it inside a few codes, as in "lEt#3", which only makes those n-grams look like
    edges), sqrt counts, unit length; all zeros for a text with no phonemes."""
    counts = np.zeros(dim, np.float32)
    for word in phones.split():
        marked = f"#{word}#"
        for n in NGRAMS:
            for i in range(len(marked) - n + 1):
                counts[zlib.crc32(marked[i:i + n].encode("utf-8")) % dim] += 1.0
    out = np.sqrt(counts)
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


def espeak_version() -> str:
    """espeak-ng's version, e.g. "1.51" ("unknown" if it does not say)."""
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    found = re.search(r"\d+(\.\d+)+", out)
    return found.group(0) if found else "unknown"


class PhoneticEncoder(Encoder):
    """See the module docstring. ``workers`` espeak-ng processes run at once."""

    modality = "text"

    def __init__(self, dim: int = PHONETIC_DIM, workers: int = 4):
        if shutil.which("espeak-ng") is None:
            raise GeraError("The phonetic text encoder needs espeak-ng: `apt-get install espeak-ng`.")
        self.name = "phonetic" if dim == PHONETIC_DIM else f"phonetic:{dim}"
        self.dim, self.workers = dim, workers
        ngrams = "".join(map(str, NGRAMS))
        # Another espeak-ng release may phonemise differently: its version keys the cache.
        self.preprocessing = (f"espeak-ng-x:{PHONETIC_VOICE}:{espeak_version()},nostress,"
                              f"ngrams{ngrams},crc32%{dim},sqrt,l2,max{_MAX_CHARS}")

    def embed(self, items: Sequence, batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        for item in items:
            if not isinstance(item, str):
                raise GeraError(f"Text encoder 'phonetic' was given a {type(item).__name__}, not a "
                                "str. Pair text encoders with text items.")
        out = np.zeros((len(items), self.dim), np.float32)
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                for row, phones in enumerate(pool.map(phonemes, chunk), start):
                    out[row] = ngram_features(phones, self.dim)
                if progress is not None:
                    progress(min(start + batch_size, len(items)), len(items))
        return out
