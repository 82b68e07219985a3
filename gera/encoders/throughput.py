"""How much the preprocessing costs: the encoder's pipeline vs its bare model forward."""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from gera.encoders.batched import BatchedEncoder
from gera.errors import GeraError


def _randomised(inputs: Any) -> Any:
    """Float tensors → random ones of the same shape and layout; token ids are kept (real text)."""
    if isinstance(inputs, torch.Tensor):
        return torch.randn_like(inputs) if inputs.is_floating_point() else inputs
    if isinstance(inputs, dict):
        return {key: _randomised(value) for key, value in inputs.items()}
    return inputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(encoder: BatchedEncoder, items: Sequence, batch_size: int = 64) -> dict:
    """Items per second of ``encoder.embed`` on ``items`` vs the bare batched forward.

    ``bare_items_per_s`` times only ``encoder.forward`` on the inputs ``encoder.prepare`` makes
    for the same batches, with float tensors (pixels) replaced by random ones and token ids kept.
    The two are timed batch by batch in turn, so load from other processes hits both alike; one
    batch of each runs first, untimed, to warm up. ``batch_size`` defaults to 64.
    Returns ``{"items", "batch_size", "pipeline_items_per_s", "bare_items_per_s", "ratio"}``,
    ratio = pipeline / bare.
    """
    if not isinstance(encoder, BatchedEncoder):
        raise GeraError(f"Throughput needs a batched torch encoder; '{encoder.name}' is a "
                        f"{type(encoder).__name__}.")
    items = list(items)
    if not items:
        raise GeraError("Throughput needs at least one item to embed.")
    order = encoder.batch_order(items)
    batches = [[items[i] for i in order[start:start + batch_size]]
               for start in range(0, len(items), batch_size)]

    def pipeline(batch: list) -> None:
        encoder.embed(batch, batch_size=batch_size)

    def bare(batch: list) -> float:
        with torch.inference_mode():
            inputs = _randomised(encoder.prepare(batch))
            _sync(encoder.device)
            start = time.perf_counter()
            encoder.forward(inputs)
            _sync(encoder.device)
            return time.perf_counter() - start

    encoder.module.eval()
    pipeline(batches[0])
    bare(batches[0])
    pipeline_s = bare_s = 0.0
    for batch in batches:
        start = time.perf_counter()
        pipeline(batch)
        pipeline_s += time.perf_counter() - start
        bare_s += bare(batch)
    pipeline_rate, bare_rate = len(items) / pipeline_s, len(items) / bare_s
    return {"items": len(items), "batch_size": batch_size, "pipeline_items_per_s": pipeline_rate,
            "bare_items_per_s": bare_rate, "ratio": pipeline_rate / bare_rate}
