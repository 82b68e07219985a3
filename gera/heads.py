"""The trained methods' two heads and the alignment they make (torch)."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gera.alignments import Alignment, Standardizer
from gera.settings import HEADS


class MLPHead(nn.Module):
    """``Linear → GELU → Linear`` plus a residual linear skip; unit-norm output."""

    def __init__(self, in_dim: int, out_dim: int = 256, hidden: int = 512):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.skip = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc2(F.gelu(self.fc1(x))) + self.skip(x), dim=-1)


class LinearHead(nn.Module):
    """One linear map; unit-norm output."""

    def __init__(self, in_dim: int, out_dim: int = 256):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(x), dim=-1)


def make_head(kind: str, in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, hidden)
    if kind == "linear":
        return LinearHead(in_dim, out_dim)
    raise ValueError(f"unknown head {kind!r}; choose one of {HEADS}")


class HeadAlignment(Alignment):
    """Two trained heads (GeRA, contrastive-only) on top of the standardised encoder outputs."""

    kind = "heads"

    def __init__(self, std_a: Standardizer, std_b: Standardizer, head_a: nn.Module,
                 head_b: nn.Module, logit_scale: float, head_config: dict, method: str):
        self.std_a, self.std_b = std_a, std_b
        self.head_a, self.head_b = head_a.eval(), head_b.eval()
        self.logit_scale = float(logit_scale)
        self.head_config = head_config  # {"head", "in_a", "in_b", "dim", "hidden"}
        self.method = method

    def _run(self, head: nn.Module, x: np.ndarray, batch: int = 8192) -> np.ndarray:
        device = next(head.parameters()).device
        with torch.no_grad():
            out = [head(torch.from_numpy(x[i:i + batch]).to(device)).float().cpu().numpy()
                   for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.head_config["dim"]), np.float32)

    def __getstate__(self) -> dict:
        # Sent to another process (a worker's result): as CPU heads, so that the receiver needs
        # no GPU and holds no CUDA memory of a worker that has moved on.
        return {**self.__dict__, "head_a": copy.deepcopy(self.head_a).cpu(),
                "head_b": copy.deepcopy(self.head_b).cpu()}

    def embed_a(self, x):
        return self._run(self.head_a, self.std_a(x))

    def embed_b(self, y):
        return self._run(self.head_b, self.std_b(y))

    def state(self):
        tensors = {"mean_a": self.std_a.mean, "mean_b": self.std_b.mean}
        for side, head in (("a", self.head_a), ("b", self.head_b)):
            for name, value in head.state_dict().items():
                tensors[f"head_{side}.{name}"] = value.detach().cpu().numpy()
        return tensors, {**self.head_config, "logit_scale": self.logit_scale, "method": self.method}

    @classmethod
    def from_state(cls, tensors, config):
        heads = []
        for side in ("a", "b"):
            head = make_head(config["head"], config[f"in_{side}"], config["dim"], config["hidden"])
            prefix = f"head_{side}."
            head.load_state_dict({k[len(prefix):]: torch.from_numpy(np.array(v))
                                  for k, v in tensors.items() if k.startswith(prefix)})
            heads.append(head)
        head_config = {k: config[k] for k in ("head", "in_a", "in_b", "dim", "hidden")}
        return cls(Standardizer(tensors["mean_a"]), Standardizer(tensors["mean_b"]), *heads,
                   config["logit_scale"], head_config, config["method"])
