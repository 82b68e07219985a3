"""Which device the app computes on, ZeroGPU's ``spaces.GPU`` where the package exists, and the
CPU threads a query runs on."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

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


_controller = None
_controller_lock = threading.Lock()


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the calling thread's torch (OpenMP) work on one thread. A query is a batch of one: a
    second OpenMP thread has little to share, and when a training job or other visitors hold the
    cores each of the forward pass's operations waits at a barrier for a partner that is not
    running (MiniLM on one text, on the 2 cores shared with other jobs: medians of 8-38 ms on one
    thread, 50-480 ms on two, in alternating blocks). Only this thread's count changes (OpenMP
    keeps one per thread), so a training job running beside it keeps its own."""
    global _controller
    from threadpoolctl import ThreadpoolController

    with _controller_lock:
        if _controller is None:  # scans the loaded libraries: once per process
            _controller = ThreadpoolController()
    # torch sets a thread's OpenMP count on the thread's first parallel operation; settle it
    # first, or that would undo the limit below.
    torch.get_num_threads()
    with _controller.limit(limits=1, user_api="openmp"):
        yield
