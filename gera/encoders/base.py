"""The one interface every encoder implements (image, text, later speech)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Optional, Sequence

import numpy as np

Progress = Optional[Callable[[int, int], None]]  # progress(done, total)


class Encoder(ABC):
    """A frozen pretrained encoder.

    Attributes
    ----------
    name : registry name, e.g. ``"mobilenet_v2"`` or ``"hf:bert-base-uncased"``.
    modality : ``"image"``, ``"text"`` or ``"speech"``.
    dim : output dimension.
    preprocessing : a short string describing everything that changes the output besides the
        weights (input size, normalisation, pooling). It is part of the embedding-cache key.
    version : bump when the code that produces embeddings changes; also part of the cache key.
    """

    name: str
    modality: str
    dim: int
    preprocessing: str = ""
    version: str = "1"

    @abstractmethod
    def embed(self, items: Sequence, batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        """Embed ``items`` (PIL images for image encoders, ``str`` for text) → float32 ``(n, dim)``.

        Not normalised. ``progress(done, total)`` is called after every batch.
        """

    @property
    def cache_key(self) -> str:
        return f"{self.name}|v{self.version}|{self.preprocessing}"

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<{type(self).__name__} {self.name} ({self.modality}, {self.dim}-d)>"
