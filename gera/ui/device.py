"""Which device the app computes on, and ZeroGPU's ``spaces.GPU`` where the package exists."""
from __future__ import annotations

import os
from typing import Callable

import torch

from gera.device import resolve_device

try:  # On a ZeroGPU Space, CUDA exists only inside functions wrapped by spaces.GPU.
    import spaces
except ImportError:
    spaces = None

# Long enough for the default job and a modest sweep; ZeroGPU queues users by requested time.
GPU_SECONDS = 180


def gpu(fn: Callable) -> Callable:
    """``spaces.GPU(duration=GPU_SECONDS)(fn)`` when ``spaces`` imports; ``fn`` unchanged otherwise."""
    return spaces.GPU(duration=GPU_SECONDS)(fn) if spaces is not None else fn


def device_label() -> str:
    """What the header shows, e.g. "cuda (NVIDIA H100)", "cuda via ZeroGPU", "cpu (2 threads)"."""
    if spaces is not None and os.environ.get("SPACES_ZERO_GPU"):
        return "cuda via ZeroGPU (a GPU is attached while a training job runs)"
    device = resolve_device("auto")
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if device == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads > 1 else ''})"
    return device
