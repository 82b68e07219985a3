"""The two terms of the GeRA loss: symmetric InfoNCE and the geometric (diffusion-operator) term.

``L = L_con + α · (L_geo^A + L_geo^B)``; α = 0 is exactly the contrastive-only baseline.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from gera.geometry import diffusion_operator, kernel_matrix

DIVERGENCES = ("frobenius", "kl")
MAX_LOGIT_SCALE = 100.0


def info_nce(za: torch.Tensor, zb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of M pairs (row i of ``za`` pairs with row i of ``zb``).

    ``za``, ``zb`` are unit vectors; ``logit_scale`` is log(1/temperature), clamped so the scale
    stays ≤ 100 as in CLIP.
    """
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * za @ zb.T
    target = torch.arange(len(za), device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def geometric_loss(original: torch.Tensor, aligned: torch.Tensor, kernel: str = "heat",
                   eps: Optional[float] = None, divergence: str = "frobenius") -> torch.Tensor:
    """Mean discrepancy between the local diffusion operators of two spaces.

    ``original``: ``(m, k+1, d)`` unit vectors of m neighbourhoods in the frozen original space;
    ``aligned``: ``(m, k+1, d')`` the same points after the aligner (unit vectors). The same ``eps``
    serves both spaces (see ``kernel_matrix``). ``frobenius``: mean_i ‖T_i − T̃_i‖²_F;
    ``kl``: mean over rows of KL(T_i ‖ T̃_i).
    """
    with torch.no_grad():  # the original space is frozen: no gradient flows into it
        t_orig = diffusion_operator(kernel_matrix(original, kernel, eps))
    t_aligned = diffusion_operator(kernel_matrix(aligned, kernel, eps))
    if divergence == "frobenius":
        return ((t_orig - t_aligned) ** 2).sum(dim=(-1, -2)).mean()
    if divergence == "kl":
        kl_rows = (t_orig * (t_orig.clamp_min(1e-12).log() - t_aligned.clamp_min(1e-12).log())).sum(-1)
        return kl_rows.mean()
    raise ValueError(f"unknown divergence {divergence!r}; choose one of {DIVERGENCES}")
