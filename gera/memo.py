"""Results of pure functions of arrays, kept for the arrays' next use.

Within one comparison the same pool is PCA'd by several methods and grid points, and the same
evaluation points are ranked in their original space for every method. Keys are content hashes
(not ``id``), so a result can never be served for different data.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from typing import Callable, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)


def fingerprint(x: np.ndarray) -> bytes:
    """A content hash of an array: its dtype, shape and bytes."""
    x = np.ascontiguousarray(x)
    digest = hashlib.blake2b(f"{x.dtype.str}{x.shape}".encode(), digest_size=20)
    if x.size:
        digest.update(memoryview(x).cast("B"))
    return digest.digest()


def memoize_arrays(maxsize: int = 4) -> Callable[[F], F]:
    """Memoise a function of arrays and plain values, keeping the ``maxsize`` most recent
    results. Callers must treat the results as read-only: they are shared."""
    def decorate(fn: F) -> F:
        results: OrderedDict = OrderedDict()
        lock = threading.Lock()

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            key = tuple(fingerprint(a) if isinstance(a, np.ndarray) else a
                        for a in (*args, *sorted(kwargs.items())))
            with lock:
                if key in results:
                    results.move_to_end(key)
                    return results[key]
            value = fn(*args, **kwargs)
            with lock:
                results[key] = value
                while len(results) > maxsize:
                    results.popitem(last=False)
            return value
        wrapper.cache_clear = results.clear
        return wrapper
    return decorate
