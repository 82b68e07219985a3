"""The shared batching loop of every torch encoder, split into ``prepare`` and ``forward``.

The split lets ``throughput.measure_throughput`` time the bare model on inputs of exactly the
shape the pipeline produces, without the preprocessing.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Sequence

import numpy as np
import torch

from gera.device import resolve_device
from gera.encoders.base import Encoder, Progress
from gera.errors import GeraError



class BatchedEncoder(Encoder):
    """An encoder that runs ``module`` on batches.

    Subclasses set ``module`` (put in eval mode here) and ``device``, and implement ``prepare``
    (raw items → model inputs on ``device``) and ``forward`` (inputs → ``(batch, dim)`` tensor).
    """

    module: torch.nn.Module
    device: torch.device

    @abstractmethod
    def prepare(self, items: Sequence) -> Any:
        """Raw items → model inputs (a tensor or a dict of tensors) on ``self.device``."""

    @abstractmethod
    def forward(self, inputs: Any) -> torch.Tensor:
        """Model inputs → ``(batch, dim)`` embeddings. Called under ``torch.inference_mode()``."""

    def batch_order(self, items: Sequence) -> np.ndarray:
        """The order items are batched in (text encoders group similar lengths to cut padding)."""
        return np.arange(len(items))

    def embed(self, items: Sequence, batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        """See ``Encoder.embed``. ``batch_size`` (default 64) items go through the model at once."""
        if batch_size < 1:
            raise GeraError(f"batch_size must be at least 1, got {batch_size}.")
        items = list(items)
        total = len(items)
        out = np.empty((total, self.dim), dtype=np.float32)
        order = self.batch_order(items)
        self.module.eval()
        with torch.inference_mode():
            for start in range(0, total, batch_size):
                rows = order[start:start + batch_size]
                batch = [items[i] for i in rows]
                out[rows] = self.forward(self.prepare(batch)).float().cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, total), total)
        return out

    def probe_dim(self, example: Any) -> int:
        """The output width, found by embedding one ``example`` (for models whose config varies)."""
        self.module.eval()
        with torch.inference_mode():
            return int(self.forward(self.prepare([example])).shape[-1])
