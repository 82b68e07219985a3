"""Ray, an optional extra (``pip install -r requirements-ray.txt``; never needed by the app).

* ``RayExecutor``: a ``concurrent.futures.Executor`` whose every ``submit`` is one Ray task, so
  ``gera.experiment.compare_many`` runs one task per budget × seed on a Ray cluster exactly as
  it does in local processes, with the same results (each seed is self-contained and seeded).
* ``embed_with_ray``: fills the embedding cache through Ray Data, one encoder actor per worker
  (``map_batches``), the embeddings streamed back to this process and written by it, chunk by
  chunk, as ``EmbeddingCache.fill`` writes them (the same keys in the same chunks).
* ``ray_session``: connected to Ray for a block: ``local`` starts a local instance and stops it
  after; any other address joins that cluster.

Where the data lives. The comparisons' Ray tasks open the embedding cache folder they are given
(``run_seed(…, cache_root)``) and the task's data by name, so on a cluster both must be on a
filesystem every node mounts at the same path (on one machine they are); ``embed_with_ray`` needs
no such thing: the embeddings travel back as Ray objects and only this process writes the cache.
"""
from __future__ import annotations

import os
from concurrent.futures import Executor, Future, InvalidStateError
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from gera.cache import LOAD_ITEMS, EmbeddingCache
from gera.data.base import ItemSet
from gera.encoders.base import Encoder, Progress
from gera.errors import GeraError

LOCAL = "local"  # --ray local: start a Ray instance on this machine for the command


def require_ray():
    """The ``ray`` module, or a ``GeraError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise GeraError("--ray needs Ray, an optional extra: pip install -r requirements-ray.txt "
                        "(or leave out --ray to run here).") from exc
    return ray


@contextmanager
def ray_session(address: str = LOCAL, num_cpus: Optional[int] = None,
                num_gpus: Optional[int] = None) -> Iterator[None]:
    """Connected to Ray inside the block. ``local``: a new local instance with ``num_cpus`` CPUs
    (default: all) and ``num_gpus``, shut down after; another address (``auto``,
    ``ray://host:10001``, ``host:6379``): that cluster, with this package shipped to its
    workers, disconnected after. Already connected: used as it is and left so."""
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    package = Path(__file__).resolve().parent
    if address == LOCAL:
        # Workers on this machine import the same checkout: no packaging, only the path.
        path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        ray.init(address=address, runtime_env={"py_modules": [str(package)]})
    try:
        yield
    finally:
        ray.shutdown()


def _call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """What a Ray task runs: ``fn(*args, **kwargs)`` on one thread, as a local worker process
    does (``gera.executors``), so that the numbers are the same wherever it runs."""
    from gera.executors import _single_threaded

    _single_threaded()
    return fn(*args, **kwargs)


class _RayFuture(Future):
    """The future of one Ray task; cancelling it cancels the task too (Ray's own
    ``ObjectRef.future()`` leaves the task running)."""

    def __init__(self, ref):
        super().__init__()
        self.ref = ref
        ref.future().add_done_callback(self._settle)

    def _settle(self, inner: Future) -> None:
        try:
            exc = inner.exception()
            if exc is None:
                self.set_result(inner.result())
            else:  # the task's own exception (a GeraError stays one), not Ray's wrapper
                cause = getattr(exc, "cause", None)
                self.set_exception(cause if isinstance(cause, BaseException) else exc)
        except (InvalidStateError, Exception):  # cancelled here first: nothing to report
            pass

    def cancel(self) -> bool:
        if self.done():
            return False
        require_ray().cancel(self.ref)
        return super().cancel()


class RayExecutor(Executor):
    """``concurrent.futures`` over Ray: ``submit(fn, *args, **kwargs)`` runs ``fn`` as one Ray
    task of ``num_cpus`` CPUs (and ``num_gpus`` GPUs) on the connected cluster (see
    ``ray_session``). ``fn`` and its arguments travel by pickling, as to a process pool."""

    def __init__(self, num_cpus: float = 1, num_gpus: float = 0):
        ray = require_ray()
        if not ray.is_initialized():
            raise GeraError("RayExecutor needs a Ray connection: use it inside ray_session().")
        self._remote = ray.remote(_call).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                                 max_retries=0)
        self._futures: list[_RayFuture] = []

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = _RayFuture(self._remote.remote(fn, args, kwargs))
        self._futures.append(future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for future in self._futures:
                future.cancel()
        if wait:
            for future in self._futures:
                if not future.cancelled():
                    future.exception()  # waits; the caller reads results from its futures


@contextmanager
def ray_executor(address: str = LOCAL, workers: Optional[int] = None) -> Iterator[RayExecutor]:
    """A ``RayExecutor`` on ``address`` (see ``ray_session``; ``workers`` = CPUs of a local
    instance), shut down with the block."""
    with ray_session(address, num_cpus=workers), RayExecutor() as executor:
        yield executor


class _EncoderActor:
    """One per Ray Data worker: builds the encoder and the item set once, then embeds the
    batches of item indices it is handed (``{"data": …}`` → ``{"data": …, "emb": …}``)."""

    def __init__(self, make_encoder: Callable[[], Encoder], make_items: Callable[[], ItemSet],
                 batch_size: int):
        self.encoder, self.items, self.batch_size = make_encoder(), make_items(), batch_size

    def __call__(self, batch: dict) -> dict:
        index = np.asarray(batch["data"], np.int64)
        emb = self.encoder.embed(self.items.load(index.tolist()), batch_size=self.batch_size)
        return {"data": index, "emb": np.asarray(emb, np.float32)}


def embed_with_ray(cache: EmbeddingCache, encoder: Encoder, items: ItemSet,
                   make_encoder: Callable[[], Encoder], make_items: Callable[[], ItemSet],
                   indices: np.ndarray, workers: Optional[int] = None, num_gpus: float = 0,
                   batch_size: int = 64, progress: Progress = None) -> int:
    """``cache.fill(encoder, items, indices)`` on Ray Data: how many items were embedded.

    ``encoder`` and ``items`` (here) name the cache entries; ``make_encoder()`` and
    ``make_items()`` (pickled to the workers: e.g. ``functools.partial(get_encoder, name,
    modality)``) build the same ones in each of ``workers`` encoder actors (default: one per
    CPU of the cluster), each with ``num_gpus`` GPUs (1: one actor per GPU). Actors embed
    ``LOAD_ITEMS`` items at a time; this process writes the chunks, ``cache.chunk_items`` rows
    each, in the order of ``indices`` — the chunks a local ``fill`` writes. Memory here stays
    bounded by a few chunks whatever the number of items.
    """
    ray = require_ray()
    import ray.data

    todo = cache.missing(encoder, items, indices)
    if len(todo) == 0:
        return 0
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the same chunks as a local fill
    if workers is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        gpus = int(ray.cluster_resources().get("GPU", 0))
        workers = max(1, gpus // max(1, int(np.ceil(num_gpus))) if num_gpus else cpus)
    # One block per chunk, so that every actor gets work from the start.
    blocks = np.array_split(todo, -(-len(todo) // cache.chunk_items))
    dataset = ray.data.from_numpy(blocks).map_batches(
        _EncoderActor, fn_constructor_args=(make_encoder, make_items, batch_size),
        batch_size=LOAD_ITEMS, batch_format="numpy", concurrency=workers,
        num_cpus=1, num_gpus=num_gpus or None)
    done = 0
    for batch in dataset.iter_batches(batch_size=cache.chunk_items, batch_format="numpy"):
        index = batch["data"].tolist()
        cache.put(encoder, [items.keys[i] for i in index], batch["emb"], index)
        done += len(index)
        if progress is not None:
            progress(done, len(todo))
    return done
