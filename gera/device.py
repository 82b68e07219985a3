"""Where tensors live: one device resolver for the encoders and the heads, and the CPU thread
count training runs on."""
from __future__ import annotations

import threading
from contextlib import contextmanager
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


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0


def _process_threads() -> tuple[int, int]:
    """torch's and faiss's thread counts as a new thread sees them. Not the caller's own: OpenMP
    keeps a count per thread, and a caller inside ``threadpool_limits(1)`` (a comparison's
    seed) reads 1, which restoring would then make every later thread of the process use."""
    import faiss

    seen = []
    probe = threading.Thread(target=lambda: seen.append((torch.get_num_threads(),
                                                         faiss.omp_get_max_threads())))
    probe.start()
    probe.join()
    return seen[0]


@contextmanager
def cpu_threads(n: Optional[int]) -> Iterator[None]:
    """Run with torch and faiss on ``n`` threads (None: leave them). The counts are
    process-wide: the first concurrent job sets them, the last one out restores them, so two
    trainings in one process (two app users) cannot strand them at 1."""
    global _threads_users, _threads_before
    if n is None:
        yield
        return
    import faiss  # its kNN search runs in training too: OpenMP threads that only spin on a busy CPU

    with _threads_lock:
        if _threads_users == 0:
            _threads_before = _process_threads()
            torch.set_num_threads(max(1, n))
            faiss.omp_set_num_threads(max(1, n))
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before[0])
                faiss.omp_set_num_threads(_threads_before[1])
