"""Audio files → clips, the one item type every speech task and encoder shares.

A clip is a 1-D ``float32`` numpy array of mono samples at 16 kHz in [-1, 1] (``SAMPLE_RATE``).
``load_audio(path)`` makes one from a wav/flac/mp3/ogg (or opus/webm/m4a) file of any usual rate
and mono or stereo, and refuses silent, empty, corrupt or over-long (> ``MAX_SECONDS``) audio.

Files may come from anyone (an upload to a public app), so a file is judged by its header before
any sample is decoded, and decoding stops after ``MAX_SECONDS`` plus a small margin whatever the
header claims. Neither memory nor time grows with what a file says it holds: an hour of 8-channel
audio is refused from its header, and one whose header lies is cut off after 31 s.

A leaf module: numpy and ``gera.errors`` only; the decoders and torchaudio load on first use.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gera.errors import GeraError

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0
# Peak below this (about -80 dBFS) = nothing but silence or dither.
SILENCE_PEAK = 1e-4
MAX_CHANNELS = 2
# Telephone audio (8 kHz) up to studio rates; a rate outside says the header is nonsense, and a
# huge one would let "30 s" mean billions of samples.
MIN_RATE, MAX_RATE = 8000, 192000
# Decoding stops this far past MAX_SECONDS: enough to tell "too long" from codec padding.
DECODE_MARGIN_S = 1.0
# 30 s of 192 kHz stereo 32-bit WAV is 46 MB; a file larger than this is refused unread.
MAX_AUDIO_BYTES = 64 * 1024 ** 2
# libsndfile reports this many frames when the header does not say (a FLAC stream of unknown
# length): no duration is known then, and only the bounded decode decides.
_UNKNOWN_FRAMES = 2 ** 62

_SPEECH_FIX = "Replace it with a recording of speech."
_FORMATS_FIX = "Use wav, flac, mp3 or ogg."
_TOO_LONG_FIX = "Cut it into shorter clips."

# Containers handed to PyAV (for what libsndfile cannot read: opus, webm and m4a recordings, odd
# mp3s), told apart by their first bytes. PyAV is always told which demuxer to use: left to guess,
# FFmpeg would also try playlist formats (HLS, concat) that open other files named inside.
_AV_MAGIC = ((b"OggS", "ogg"), (b"fLaC", "flac"), (b"RIFF", "wav"), (b"ID3", "mp3"),
             (b"\x1a\x45\xdf\xa3", "matroska"))


class BadAudio(GeraError):
    """An unusable clip or audio file. ``why`` says what is wrong in a few words ("silent"),
    for callers that list many problems at once; ``str()`` is the full message with the fix."""

    def __init__(self, what: str, why: str, fix: str):
        super().__init__(f"{what} is {why}. {fix}")
        self.why = why


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono ``audio`` at ``rate`` Hz → ``SAMPLE_RATE`` (torchaudio's windowed-sinc resampler)."""
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(audio, dtype=np.float32)
    import torch
    import torchaudio.functional as audio_f

    tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return audio_f.resample(tensor, rate, SAMPLE_RATE).numpy()


def check_clip(clip: np.ndarray, what: str) -> np.ndarray:
    """``clip`` if it is a usable clip, else one ``BadAudio`` naming ``what`` and the problem."""
    if clip.size == 0:
        raise BadAudio(what, "empty (no samples)", _SPEECH_FIX)
    if not np.isfinite(clip).all():
        raise BadAudio(what, "invalid (NaN or infinite samples)", "Re-export the audio.")
    seconds = clip.size / SAMPLE_RATE
    if seconds > MAX_SECONDS:
        raise BadAudio(what, f"{seconds:.1f} s long, over the {MAX_SECONDS:.0f} s limit",
                       _TOO_LONG_FIX)
    if float(np.abs(clip).max()) < SILENCE_PEAK:
        raise BadAudio(what, "silent (its loudest sample is below -80 dBFS)", _SPEECH_FIX)
    return clip


def _check_header(what: str, channels: int, rate: float, seconds: float | None) -> int:
    """The frames to decode at most, once the header's channels, rate and length pass."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadAudio(what, f"{channels}-channel audio; at most {MAX_CHANNELS} channels "
                             "(stereo) are accepted", "Export it as mono or stereo.")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadAudio(what, f"sampled at {rate:g} Hz, outside {MIN_RATE}-{MAX_RATE} Hz",
                       "Re-export it at a usual rate such as 16000 or 44100 Hz.")
    if seconds is not None and seconds > MAX_SECONDS:
        raise BadAudio(what, f"{seconds:.1f} s long, over the {MAX_SECONDS:.0f} s limit",
                       _TOO_LONG_FIX)
    return math.ceil((MAX_SECONDS + DECODE_MARGIN_S) * rate)


def _read_soundfile(path: Path, what: str) -> tuple[np.ndarray, int]:
    """libsndfile (wav/flac/ogg/mp3): header first, then at most the frames it allows."""
    import soundfile

    with soundfile.SoundFile(str(path)) as sf:
        known = 0 <= sf.frames < _UNKNOWN_FRAMES and sf.samplerate > 0
        limit = _check_header(what, sf.channels, sf.samplerate,
                              sf.frames / sf.samplerate if known else None)
        return sf.read(frames=limit, dtype="float32", always_2d=True), int(sf.samplerate)


def _av_format(path: Path) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[4:8] == b"ftyp":
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame
        return "mp3"
    return next((fmt for magic, fmt in _AV_MAGIC if head.startswith(magic)), None)


def _read_av(path: Path, what: str) -> tuple[np.ndarray, int]:
    """PyAV for what libsndfile cannot read; the same header checks and decode bound."""
    import av

    fmt = _av_format(path)
    if fmt is None:
        raise ValueError("not a known audio container")
    with av.open(str(path), format=fmt) as container:
        stream = container.streams.audio[0]
        rate = stream.rate or SAMPLE_RATE
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = None
        limit = _check_header(what, stream.codec_context.layout.nb_channels, rate, seconds)
        # Planar float whatever the codec's sample format: (channels, samples) arrays.
        to_float = av.AudioResampler(format="fltp")
        frames, decoded = [], 0
        for frame in container.decode(stream):
            for out in to_float.resample(frame):
                frames.append(out.to_ndarray())
                decoded += frames[-1].shape[1]
            if decoded > limit:
                break
    if not frames:
        return np.zeros((0, 1), np.float32), int(rate)
    return np.concatenate(frames, axis=1)[:, :limit].T.astype(np.float32), int(rate)


def _decode(path: Path, what: str) -> tuple[np.ndarray, int]:
    """``(samples (n, channels) float32, rate)``, at most ``MAX_SECONDS`` + margin of them."""
    import soundfile

    try:
        return _read_soundfile(path, what)
    except BadAudio:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_error:
        try:
            import av
        except ImportError:
            raise sf_error from None
        try:
            return _read_av(path, what)
        except BadAudio:
            raise
        except (av.FFmpegError, IndexError, ValueError, AttributeError):
            raise sf_error from None


def load_audio(path: str | Path, what: str | None = None) -> np.ndarray:
    """The clip in the audio file ``path``: mono (channels averaged), 16 kHz, float32.

    Mono or stereo, 8-192 kHz, wav/flac/mp3/ogg (opus, webm and m4a through PyAV). An empty,
    silent, corrupt, too large (> ``MAX_AUDIO_BYTES``), over-long (> 30 s) or many-channel file
    raises one ``BadAudio`` (a ``GeraError``) that names the file and the problem. ``what``
    names the file in messages (default: "Audio file <path>"; a public app passes a name that
    does not show the server's paths).
    """
    path = Path(path)
    what = what or f"Audio file {path}"
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BadAudio(what, f"unreadable ({err.strerror or err})",
                       "Check the path and its permissions.") from None
    if size == 0:
        raise BadAudio(what, "empty (0 bytes)", _SPEECH_FIX)
    if size > MAX_AUDIO_BYTES:
        raise BadAudio(what, f"{size / 1024 ** 2:.0f} MB, over the "
                             f"{MAX_AUDIO_BYTES // 1024 ** 2} MB limit for a clip",
                       f"Cut it into clips of at most {MAX_SECONDS:.0f} s, or compress it.")
    try:
        audio, rate = _decode(path, what)
    except BadAudio:
        raise
    except Exception as err:  # noqa: BLE001 - decoders raise many types for damaged files
        raise BadAudio(what, f"corrupt or not audio ({type(err).__name__})",
                       _FORMATS_FIX) from None
    if audio.shape[0] / rate > MAX_SECONDS:  # before resampling: no work on what is refused
        # Decoding stops past the limit, so a longer file shows up as "more than" that much.
        stopped = audio.shape[0] >= math.ceil((MAX_SECONDS + DECODE_MARGIN_S) * rate)
        length = f"{'more than ' if stopped else ''}{audio.shape[0] / rate:.1f} s long"
        raise BadAudio(what, f"{length}, over the {MAX_SECONDS:.0f} s limit", _TOO_LONG_FIX)
    return check_clip(resample(audio.mean(axis=1), rate), what)
