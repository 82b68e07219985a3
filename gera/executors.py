"""Where a comparison's seeds run: here, in local worker processes, or on a Ray cluster.

Every executor is a ``concurrent.futures.Executor`` that ``gera.experiment.compare`` submits
``run_seed`` jobs to; results are identical wherever the jobs run (each seed is self-contained
and seeded).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Iterator, Optional


def default_workers() -> int:
    """One process per core: each fit trains its heads on one thread."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


@contextmanager
def seed_executor(workers: int = 1, ray: Optional[str] = None) -> Iterator[Optional[Executor]]:
    """``workers`` local processes (None when 1: run in this process, with live progress), or,
    with ``ray`` (an address, or ``local`` for a local instance of ``workers`` CPUs), Ray tasks
    (``gera.distributed``, an optional extra)."""
    if ray is not None:
        from gera.distributed import ray_executor

        with ray_executor(ray, workers) as executor:
            yield executor
        return
    if workers <= 1:
        yield None
        return
    # spawn, not fork: a forked child inherits torch's and faiss's thread pools mid-state.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_threaded) as pool:
        for _ in range(workers):  # starts the workers now (one per submit while none is idle):
            pool.submit(int)      # their imports overlap this process's set-up
        yield pool


def _single_threaded() -> None:
    # Each worker is one of ``workers`` processes sharing the cores: BLAS, OpenMP or torch
    # threads on top would oversubscribe them and slow every process down.
    from threadpoolctl import threadpool_limits

    from gera.device import set_thread_counts

    threadpool_limits(1)
    set_thread_counts((1, 1))
    import gera.experiment  # noqa: F401  (what every job needs, imported while the driver sets up)
