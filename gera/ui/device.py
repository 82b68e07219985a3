"""Which device the app computes on, and ZeroGPU's ``spaces.GPU`` where the package exists."""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch

from gera.device import resolve_device

try:  # On a ZeroGPU Space, CUDA exists only inside functions wrapped by spaces.GPU.
    import spaces
except ImportError:
    spaces = None

# Without a job deadline: long enough for the default job and a modest sweep. ZeroGPU queues
# visitors by the time they ask for.
GPU_SECONDS = 180


def gpu(seconds: Optional[float] = None) -> Callable[[Callable], Callable]:
    """``spaces.GPU(duration=seconds)`` (default ``GPU_SECONDS``) when ``spaces`` imports: the
    GPU is held as long as the app lets a job run. Leaves the function unchanged otherwise."""
    def wrap(fn: Callable) -> Callable:
        if spaces is None:
            return fn
        return spaces.GPU(duration=int(seconds or GPU_SECONDS))(fn)
    return wrap


def device_label() -> str:
    """What the header shows, e.g. "cuda (NVIDIA H100)", "cuda via ZeroGPU", "cpu (2 threads)"."""
    if spaces is not None and os.environ.get("SPACES_ZERO_GPU"):
        return "cuda via ZeroGPU (a GPU is attached while a training job runs)"
    device = resolve_device("auto")
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads > 1 else ''})"
    return device.type
