"""Where tensors live: one device resolver for the encoders and the heads, and the CPU thread
count training runs on."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Optional

import torch

from gera.errors import GeraError


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → cuda if available, else mps, else cpu; any other value is checked and kept."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise GeraError(f"Unknown device {device!r}. Use 'auto', 'cpu', 'cuda', 'cuda:N' or "
                        "'mps'.") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}.get(resolved.type, False)
    if not available:
        raise GeraError(f"Device {device!r} is not available on this machine. Use device='auto' "
                        "(picks the best one present) or 'cpu'.")
    return resolved


_precision_lock = threading.Lock()
_precision_users = 0
_precision_before = "highest"


@contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """torch's float32 matmul precision set to ``precision`` for the block; ``"highest"`` leaves
    the process's own setting alone. torch's setting is process-wide: trainings overlapping in
    one process (threads) share the last one set, and the last to finish gives the process back
    the setting it had before the first began."""
    global _precision_users, _precision_before
    if precision == "highest":
        yield
        return
    with _precision_lock:
        if _precision_users == 0:
            _precision_before = torch.get_float32_matmul_precision()
        _precision_users += 1
        torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        with _precision_lock:
            _precision_users -= 1
            if _precision_users == 0:
                torch.set_float32_matmul_precision(_precision_before)


def queued_copy(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t.to(device)`` that joins the GPU's queue instead of waiting for it: CUDA copies from
    ordinary (pageable) host memory only after the stream's queued work is done, so a training
    step that sends its sampled indices that way runs in lockstep with the GPU. From pinned memory
    the copy is queued like a kernel (torch keeps the pinned block until it has run)."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = (0, 0)


@lru_cache(maxsize=1)
def _faiss():
    """faiss, or None where it is not installed (a bare GPU machine running a snapshot: the
    exact kNN graphs are torch's, and only pools beyond ``geometry.APPROX_THRESHOLD`` need faiss)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _counts() -> tuple[int, int]:
    faiss = _faiss()
    return torch.get_num_threads(), faiss.omp_get_max_threads() if faiss else 0


def set_thread_counts(counts: tuple[int, int]) -> None:
    """torch's threads (process-wide) and faiss's OpenMP threads (this thread's), where faiss is
    installed."""
    torch.set_num_threads(counts[0])
    faiss = _faiss()
    if faiss is not None:
        faiss.omp_set_num_threads(counts[1])


def _in_new_thread(fn):
    """``fn()`` run in a short-lived thread. OpenMP keeps a thread count per thread, and torch a
    process-wide one that new threads start from: a new thread reads the process's counts (not
    the caller's, which ``threadpool_limits(1)`` may have set to 1), and what it sets is what
    later threads start from."""
    out = []
    probe = threading.Thread(target=lambda: out.append(fn()))
    probe.start()
    probe.join()
    return out[0]


@contextmanager
def cpu_threads(n: Optional[int]) -> Iterator[None]:
    """Run the calling thread's torch and faiss work on ``n`` threads (None: leave them). On
    exit the caller gets its own counts back (1 inside a comparison's ``threadpool_limits(1)``,
    so a seed's numbers do not depend on where it runs), and the last of concurrent jobs (two
    app users) gives the process its counts back, so no later thread is stranded at 1."""
    global _threads_users, _threads_before
    if n is None:
        yield
        return
    own = _counts()
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = _in_new_thread(_counts)
        _threads_users += 1
        set_thread_counts((max(1, n), max(1, n)))
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            set_thread_counts(own)
            if _threads_users == 0:
                _in_new_thread(lambda: set_thread_counts(_threads_before))
