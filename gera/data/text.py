"""An ``ItemSet`` over arbitrary strings (prompts, a user's query), keyed for the shared cache."""
from __future__ import annotations

from typing import Sequence

from gera.data.base import ItemSet
from gera.data.common import text_key


def text_items(texts: Sequence[str]) -> ItemSet:
    texts = list(texts)
    return ItemSet("text", [text_key(t) for t in texts], lambda idx: [texts[i] for i in idx])
