"""The image and text towers of open_clip models: ``openclip:<arch>[:<pretrained>]``.

``<pretrained>`` is an open_clip tag (e.g. ``openai``, ``laion2b_s34b_b79k``; fetched from the
Hub), a local weights file, or absent / ``none`` for random weights (only useful for tests).
``<arch>`` may also be ``hf-hub:org/repo`` or ``local-dir:/path``, which carry their own weights.
"""
from __future__ import annotations

import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from PIL import Image

from gera.encoders.batched import BatchedEncoder
from gera.encoders.hub import fingerprint, hub_access, is_local
from gera.encoders.image import check_images
from gera.encoders.text import TextEncoder
from gera.errors import GeraError
from gera.images import to_rgb

_SCHEMAS = ("hf-hub:", "local-dir:")
_OPEN_CLIP_WEIGHTS = "open_clip_pytorch_model.bin"  # open_clip's default file name in a repo
_OPEN_CLIP_SAFE_WEIGHTS = "open_clip_model.safetensors"


class OpenClipModel(NamedTuple):
    model: torch.nn.Module
    preprocess: object  # the model's own PIL → tensor transform (eval variant)
    tokenizer: object
    weights: str  # identifies the weights in cache keys


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"<arch>[:<pretrained>]"`` → ``(arch, pretrained or None)``."""
    if spec.startswith(_SCHEMAS):
        return spec, None
    arch, _, pretrained = spec.partition(":")
    if not arch:
        raise GeraError("An openclip encoder needs an architecture: 'openclip:<arch>:<pretrained>', "
                        "e.g. 'openclip:ViT-B-32:openai'.")
    return arch, (None if pretrained.lower() in ("", "none") else pretrained)


def canonical_spec(arch: str, pretrained: str | None) -> str:
    return arch + (f":{pretrained}" if pretrained else "")


def _check_known(name: str, arch: str, pretrained: str | None) -> None:
    import open_clip

    if arch.startswith(_SCHEMAS):
        return
    if arch not in open_clip.list_models():
        raise GeraError(f"Encoder '{name}': '{arch}' is not an open_clip architecture. Known ones "
                        f"include: {', '.join(open_clip.list_models()[:12])} … (see "
                        "open_clip.list_models()).")
    if pretrained and not Path(pretrained).expanduser().is_file() \
            and not open_clip.get_pretrained_cfg(arch, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(arch) or ["none"]
        raise GeraError(f"Encoder '{name}': '{pretrained}' is neither an open_clip weights tag for "
                        f"{arch} nor a file. Tags for {arch}: {', '.join(tags)}.")


def _hub_repo(arch: str, pretrained: str | None) -> str | None:
    """The Hub repo a load of ``arch`` / tag ``pretrained`` downloads from, if any."""
    from open_clip.pretrained import get_pretrained_cfg

    if arch.startswith("hf-hub:"):
        return arch.removeprefix("hf-hub:")
    hub = (get_pretrained_cfg(arch, pretrained) or {}).get("hf_hub", "") if pretrained else ""
    return os.path.split(hub)[0] or None


def _cached_files(arch: str, pretrained: str | None) -> tuple[str, str | None, dict]:
    """``(arch, pretrained, extra create_model arguments)`` that load the same model from the
    local Hub cache only. open_clip has no per-call offline switch, so its files are looked up
    here (``local_files_only``) and handed to it as local ones; a tag's preprocessing, which
    open_clip takes from the tag, is passed along explicitly."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from open_clip.pretrained import get_pretrained_cfg

    if arch.startswith("hf-hub:"):
        folder = snapshot_download(arch.removeprefix("hf-hub:"), local_files_only=True)
        return f"local-dir:{folder}", None, {}
    cfg = (get_pretrained_cfg(arch, pretrained) or {}) if pretrained else {}
    if not cfg.get("hf_hub"):
        return arch, pretrained, {}  # random weights, or weights from a URL (open_clip's cache)
    repo, filename = os.path.split(cfg["hf_hub"])
    filename = filename or _OPEN_CLIP_WEIGHTS
    # open_clip prefers a safetensors copy of the weights where the repo has one.
    safe = (_OPEN_CLIP_SAFE_WEIGHTS if filename == _OPEN_CLIP_WEIGHTS
            else filename.rsplit(".", 1)[0] + ".safetensors")
    try:
        path = hf_hub_download(repo, safe, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached under that name: try the original
        path = hf_hub_download(repo, filename, local_files_only=True)
    preprocess = {"image_mean": cfg.get("mean"), "image_std": cfg.get("std"),
                  "image_interpolation": cfg.get("interpolation"),
                  "image_resize_mode": cfg.get("resize_mode")}
    return arch, path, {k: v for k, v in preprocess.items() if v is not None}


def _tokenizer_options(arch: str, local_only: bool) -> dict:
    """Cached files only for a tokenizer from the Hub (the others ship with open_clip)."""
    import open_clip

    if not local_only or arch.startswith("local-dir:"):
        return {}
    text_cfg = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    return {"local_files_only": True} if text_cfg.get("hf_tokenizer_name") else {}


@lru_cache(maxsize=4)
def load_openclip(arch: str, pretrained: str | None, device: torch.device) -> OpenClipModel:
    """Build (and cache per process) an open_clip model; both towers share one load."""
    import open_clip
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    name = "openclip:" + canonical_spec(arch, pretrained)
    _check_known(name, arch, pretrained)
    local_file = bool(pretrained) and is_local(pretrained)
    needs_hub = arch.startswith("hf-hub:") or (bool(pretrained) and not local_file)
    if arch.startswith("hf-hub:"):
        source = f"'{arch.removeprefix('hf-hub:')}'"
    else:
        source = f"the {arch} weights '{pretrained}'" if pretrained else arch
    fix = (f"put the weights file on this machine and use 'openclip:{arch}:/path/to/weights'"
           if not arch.startswith("hf-hub:") else
           "download the repo where the Hub is reachable and use 'openclip:local-dir:DIR'")
    repo = _hub_repo(arch, pretrained) if needs_hub else None
    with hub_access(name, source, needs_hub=needs_hub, fix=fix, repo_id=repo) as local_only:
        if local_only:
            load_arch, load_weights, extra = _cached_files(arch, pretrained)
        else:
            load_arch, load_weights, extra = arch, pretrained, {}
            if needs_hub and not arch.startswith("hf-hub:"):
                # Fetch first: open_clip logs a root-logger error for a failed download, we don't.
                download_pretrained(get_pretrained_cfg(arch, pretrained))
        model, _, preprocess = open_clip.create_model_and_transforms(
            load_arch, pretrained=load_weights, device=device, **extra)
        tokenizer = open_clip.get_tokenizer(load_arch, **_tokenizer_options(load_arch, local_only))
    if local_file:
        weights = f"file={fingerprint(pretrained)}"
    elif arch.startswith("local-dir:"):
        weights = f"files={fingerprint(arch.removeprefix('local-dir:'))}"
    elif pretrained or arch.startswith("hf-hub:"):
        weights = f"pretrained={pretrained or 'hub'}"
    else:
        # Random weights differ at every load: never share their cached embeddings.
        weights = f"random-init={uuid.uuid4().hex}"
    return OpenClipModel(model.eval(), preprocess, tokenizer, weights)


class OpenClipImageEncoder(BatchedEncoder):
    """``encode_image`` of an open_clip model, with the model's own preprocess transform."""

    modality = "image"

    def __init__(self, name: str, loaded: OpenClipModel, device: torch.device):
        self.name, self.device, self._loaded = name, device, loaded
        self.module = loaded.model
        self.preprocessing = f"open_clip-preprocess,{loaded.weights}"
        self.dim = self.probe_dim(Image.new("RGB", (32, 32)))

    def prepare(self, items: Sequence) -> torch.Tensor:
        check_images(items, self.name)
        return torch.stack([self._loaded.preprocess(to_rgb(item)) for item in items]).to(self.device)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(inputs)


class OpenClipTextEncoder(TextEncoder):
    """``encode_text`` of an open_clip model, with the model's tokenizer."""

    def __init__(self, name: str, loaded: OpenClipModel, device: torch.device):
        self.name, self.device, self._loaded = name, device, loaded
        self.module = loaded.model
        self.preprocessing = f"open_clip-tokenizer,{loaded.weights}"
        self.dim = self.probe_dim("a")

    def prepare(self, items: Sequence) -> torch.Tensor:
        self.check_texts(items)
        return self._loaded.tokenizer(list(items)).to(self.device)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.module.encode_text(inputs)


def load_openclip_image(spec: str, device: torch.device) -> OpenClipImageEncoder:
    """The image tower of ``openclip:<spec>``."""
    arch, pretrained = parse_spec(spec)
    return OpenClipImageEncoder("openclip:" + canonical_spec(arch, pretrained),
                                load_openclip(arch, pretrained, device), device)


def load_openclip_text(spec: str, device: torch.device) -> OpenClipTextEncoder:
    """The text tower of ``openclip-text:<spec>``."""
    arch, pretrained = parse_spec(spec)
    return OpenClipTextEncoder("openclip-text:" + canonical_spec(arch, pretrained),
                               load_openclip(arch, pretrained, device), device)
