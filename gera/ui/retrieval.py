"""Queries against a model set: text → images, image → texts, speech → texts.

A query is embedded once by the model set's encoder (never through the on-disk cache: users'
queries are not kept), then mapped by each asked method's alignment and ranked against that
method's aligned gallery: every method of a model set shares its encoders, so the page's two
answers (GeRA and a baseline) cost one encoder call, not two.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from gera.encoders import get_encoder
from gera.audio import load_audio
from gera.errors import GeraError
from gera.images import open_image
from gera.io import atomic_write
from gera.ui.device import one_thread
from gera.ui.models import ModelSet

MAX_QUERY_CHARS = 500


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best], kind="stable")]


def _needs(models: ModelSet, modality: str) -> None:
    if models.modality_a != modality:
        raise GeraError(f"“{models.title}” aligns {models.modality_a} with text, not "
                        f"{modality}: choose a {modality} ↔ text model.")


def embed_text(models: ModelSet, text: str) -> np.ndarray:
    """``text`` as a raw B embedding (1 × d) of the model set's text encoder."""
    text = (text or "").strip()
    if not text:
        raise GeraError("Type a description to search for, e.g. “a large cat face on the left, on "
                        "a blue background”.")
    if len(text) > MAX_QUERY_CHARS:
        raise GeraError(f"The query is {len(text)} characters long; keep it under "
                        f"{MAX_QUERY_CHARS}.")
    with one_thread():
        return get_encoder(models.encoder_b, "text").embed([text])


def items_for(models: ModelSet, method: str, raw_text: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` gallery A items (gallery positions) closest to a raw text embedding under
    ``method``, with their scores."""
    query = models.alignment(method).embed_b(raw_text)
    scores = models.aligned[method][0] @ query[0]
    return [(int(i), float(scores[i])) for i in _top(scores, k)]


THUMBNAIL_PX = 256


def thumbnail(models: ModelSet, position: int) -> Path:
    """Gallery A item ``position`` as a PNG file the page can show, rendered on first use and
    written atomically: a file is complete before any request can serve it, and never rewritten
    while another request streams it."""
    index = int(models.gallery_a.indices[position])
    path = models.thumbnails / f"{index}.png"
    if not path.is_file():
        image = models.task.a.load([index])[0]
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: image.save(f, format="PNG"))
    return path


def text_to_images(models: ModelSet, methods: Sequence[str], text: str,
                   k: int) -> list[list[tuple[str, str]]]:
    """For each of ``methods``: gallery entries ``(image file, "score · what it shows")`` for its
    ``k`` best images."""
    _needs(models, "image")
    raw = embed_text(models, text)
    return [[(str(thumbnail(models, i)), f"{score:.3f} · {models.gallery_a.texts[i]}")
             for i, score in items_for(models, method, raw, k)] for method in methods]


def load_query_image(path: str | Path) -> Image.Image:
    """The uploaded image, through the same checks as every image (``gera.images``); messages
    name the upload, never the server's temp path."""
    if path is None:
        raise GeraError("Upload an image first.")
    return open_image(path, "The uploaded image")


def _texts_for(models: ModelSet, method: str, raw_query: np.ndarray, k: int) -> list[list]:
    query = models.alignment(method).embed_a(raw_query)
    scores = models.aligned[method][1] @ query[0]
    return [[rank, models.gallery_b.texts[i], round(float(scores[i]), 4)]
            for rank, i in enumerate(_top(scores, k), start=1)]


def _embed_a(models: ModelSet, modality: str, item) -> np.ndarray:
    _needs(models, modality)
    with one_thread():
        return get_encoder(models.encoder_a, modality).embed([item])


def image_to_texts(models: ModelSet, methods: Sequence[str], image: Image.Image,
                   k: int) -> list[list[list]]:
    """For each of ``methods``: rows ``[rank, caption, score]`` of the ``k`` captions closest to
    ``image``."""
    raw = _embed_a(models, "image", image)
    return [_texts_for(models, method, raw, k) for method in methods]


def load_query_audio(path: str | Path) -> np.ndarray:
    """The clip in an uploaded or recorded file; silent, corrupt or over-long audio raises a
    ``GeraError`` that says which (from ``load_audio``), without the server's temp path."""
    if path is None:
        raise GeraError("Record or upload a clip of speech first.")
    return load_audio(path, "The clip")


def speech_to_texts(models: ModelSet, methods: Sequence[str], clip: np.ndarray,
                    k: int) -> list[list[list]]:
    """For each of ``methods``: rows ``[rank, transcript, score]`` of the ``k`` texts closest to
    ``clip``."""
    raw = _embed_a(models, "speech", clip)
    return [_texts_for(models, method, raw, k) for method in methods]
