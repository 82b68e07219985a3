"""The two terms of the GeRA loss: symmetric InfoNCE and the geometric (diffusion-operator) term.

``L = L_con + α · (L_geo^A + L_geo^B)``; α = 0 is exactly the contrastive-only baseline.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from gera.geometry import KERNELS
from gera.settings import DIVERGENCES

MAX_LOGIT_SCALE = 100.0  # CLIP's cap on 1/temperature


def pairwise_sq_dist(u: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances within each neighbourhood: ``(..., m, d) → (..., m, m)``.

    For unit vectors ``‖u-v‖² = 2 - 2 cos``, which is cheaper and exactly symmetric.
    """
    return (2.0 - 2.0 * (u @ u.transpose(-1, -2))).clamp_min(0.0)


def kernel_matrix(u: torch.Tensor, kernel: str = "heat", eps: Optional[float] = None) -> torch.Tensor:
    """Kernel on the unit vectors of each neighbourhood, ``(..., m, d) → (..., m, m)``.

    ``heat``: exp(-‖u-v‖²/ε); ``inverse``: 1/(1+‖u-v‖²/ε); ``linear``: (1+cos)/2;
    ``squared``: ((1+cos)/2)². ``eps`` (heat, inverse) must come from the ORIGINAL space and be
    shared by both spaces: re-estimating it from the aligned space hides a global shrink.
    """
    if kernel in ("heat", "inverse"):
        if eps is None:
            raise ValueError(f"kernel {kernel!r} needs the bandwidth eps")
        d2 = pairwise_sq_dist(u)
        return torch.exp(-d2 / eps) if kernel == "heat" else 1.0 / (1.0 + d2 / eps)
    cos_sim = u @ u.transpose(-1, -2)
    if kernel == "linear":
        return (1.0 + cos_sim) / 2.0
    if kernel == "squared":
        return ((1.0 + cos_sim) / 2.0) ** 2
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")


def diffusion_operator(w: torch.Tensor) -> torch.Tensor:
    """Row-normalise a kernel matrix: ``T = D⁻¹ W`` (every row sums to 1)."""
    return w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def info_nce(za: torch.Tensor, zb: torch.Tensor, logit_scale: torch.Tensor,
             weights: Optional[torch.Tensor] = None,
             positives: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of M pairs (row i of ``za`` pairs with row i of ``zb``).

    ``za``, ``zb`` are unit vectors; ``logit_scale`` is log(1/temperature) (the trainer clamps it
    at log 100, as CLIP does). ``weights`` (M,): each pair's weight in both directions' mean (e.g.
    pseudo-pairs down-weighted); ``None`` = all 1.
    ``positives`` (M, M) bool, the diagonal set: multi-positive InfoNCE, -log of the softmax mass
    on every positive. It matters where rows repeat: a text said by three voices is one query row
    three times, and plain InfoNCE asks each copy for a different clip (equal pulls whatever the
    clips), where this one asks for any of them. ``None`` = plain InfoNCE.
    """
    logits = logit_scale.exp() * za @ zb.T
    if positives is None:
        target = torch.arange(len(za), device=za.device)
        if weights is None:
            return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        per_pair = (F.cross_entropy(logits, target, reduction="none")
                    + F.cross_entropy(logits.T, target, reduction="none"))
    else:
        per_pair = sum(torch.logsumexp(s, 1) - torch.logsumexp(s.masked_fill(~pos, -torch.inf), 1)
                       for s, pos in ((logits, positives), (logits.T, positives.T)))
        if weights is None:
            return 0.5 * per_pair.mean()
    return 0.5 * (weights * per_pair).sum() / weights.sum().clamp_min(1e-12)


def propagation_loss(original: torch.Tensor, aligned_neighbours: torch.Tensor,
                     partners: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                     logit_scale: torch.Tensor, kernel: str = "heat",
                     eps: Optional[float] = None) -> torch.Tensor:
    """Partner propagation: each paired point's partner, spread over its neighbourhood by the
    frozen space's diffusion operator, as a soft positive for the neighbours.

    ``original``: ``(p, k+1, d)`` unit vectors of p neighbourhoods ``{i} ∪ kNN(i)`` of paired
    anchors in the frozen space (anchor first); ``aligned_neighbours``: ``(p, k, d')`` the k
    neighbours after the head; ``partners``: ``(m, d')`` the other modality's side of the batch's
    pairs; ``targets``: ``(p,)`` the row of each anchor's partner in ``partners``; ``mask``:
    ``(p, k)`` 1 where a neighbour may receive the partner (an unpaired point), else 0.

    With ``T_i`` the anchor's row of the diffusion operator on its neighbourhood (GeRA's kernel
    and ε, frozen space, no gradient), the loss is ``mean_i Σ_j mask_ij T_i[j] · CE_j``, where
    ``CE_j`` is the cross-entropy of neighbour j's logits over the partners with target the
    anchor's partner. Zero when every mask entry is 0 (no unpaired neighbour).
    """
    with torch.no_grad():
        weight = diffusion_operator(kernel_matrix(original, kernel, eps))[:, 0, 1:] * mask
    p, k = weight.shape
    logits = logit_scale.exp() * aligned_neighbours.reshape(p * k, -1) @ partners.T
    ce = F.cross_entropy(logits, targets[:, None].expand(p, k).reshape(-1),
                         reduction="none").reshape(p, k)
    return (weight * ce).sum(1).mean()


def geometric_loss(original: torch.Tensor, aligned: torch.Tensor, kernel: str = "heat",
                   eps: Optional[float] = None, divergence: str = "frobenius") -> torch.Tensor:
    """Mean discrepancy between the local diffusion operators of two spaces.

    ``original``: ``(m, k+1, d)`` unit vectors of m neighbourhoods in the frozen original space;
    ``aligned``: ``(m, k+1, d')`` the same points after the aligner (unit vectors). The same ``eps``
    serves both spaces (see ``kernel_matrix``). ``frobenius``: mean_i ‖T_i − T̃_i‖²_F;
    ``kl``: mean over rows of KL(T_i ‖ T̃_i).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {DIVERGENCES}")
    with torch.no_grad():  # the original space is frozen: no gradient flows into it
        t_orig = diffusion_operator(kernel_matrix(original, kernel, eps))
    if divergence == "frobenius":
        t_aligned = diffusion_operator(kernel_matrix(aligned, kernel, eps))
        return ((t_orig - t_aligned) ** 2).sum(dim=(-1, -2)).mean()
    log_orig = t_orig.clamp_min(1e-30).log()
    kl_rows = (t_orig * (log_orig - log_diffusion_operator(aligned, kernel, eps))).sum(-1)
    return kl_rows.mean()


def log_diffusion_operator(u: torch.Tensor, kernel: str, eps: Optional[float]) -> torch.Tensor:
    """log T, computed so that far points keep their gradient: for the heat kernel
    log T = log_softmax(−‖u−v‖²/ε) exactly, where exp would underflow to 0 first."""
    if kernel == "heat":
        return F.log_softmax(-pairwise_sq_dist(u) / eps, dim=-1)
    w = kernel_matrix(u, kernel, eps).clamp_min(1e-30)
    return w.log() - w.sum(-1, keepdim=True).log()


def similarity_walks(x: torch.Tensor, tau: float, levels: int) -> list[torch.Tensor]:
    """STRUCTURE's multi-scale similarity distributions of a batch ``(B, d)``: rows L2-normalised
    then centred on the batch mean (not renormalised), ``P = row-softmax(X Xᵀ / τ)`` with the
    diagonal kept, and its powers ``P, P², …, P^levels`` (l-step random walks)."""
    x = F.normalize(x, dim=-1)
    x = x - x.mean(0, keepdim=True)
    p = torch.softmax((x * (1.0 / tau)) @ x.T, dim=-1)  # scaled before the product: (B, d) < (B, B)
    walks = [p]
    for _ in range(levels - 1):
        walks.append(walks[-1] @ p)
    return walks


def structure_loss(original: torch.Tensor, aligned: torch.Tensor, levels: int = 2,
                   tau: float = 0.05) -> torch.Tensor:
    """STRUCTURE's regulariser R for one modality: per level l, the Jensen–Shannon divergence
    between the rows of ``Pˡ`` (frozen space) and ``Qˡ`` (aligned), averaged over rows, weighted
    ``w_l = 1`` for one level and ``1/l`` for several, averaged over levels.

    The textbook JS, ½ KL(P‖M) + ½ KL(Q‖M) with M = (P + Q)/2 (the paper's code takes KL from
    the mixture instead). Zero when both spaces give the same walks; no gradient reaches the
    frozen space."""
    with torch.no_grad():
        p_walks = similarity_walks(original, tau, levels)
    q_walks = similarity_walks(aligned, tau, levels)
    total = aligned.new_zeros(())
    for level, (p, q) in enumerate(zip(p_walks, q_walks), start=1):
        weight = 1.0 if levels == 1 else 1.0 / level
        total = total + weight * JensenShannonRows.apply(p, q)[0].mean()
    return total / levels


class JensenShannonRows(torch.autograd.Function):
    """``JS(p_i ‖ q_i)`` per row of two ``(B, B)`` row-stochastic matrices, the gradient to ``q``
    only (``p`` is the frozen space's). Written out because autograd through the textbook
    formula ran ~35 passes over the B² entries a level, a STRUCTURE step's largest cost on a
    CPU; d JS / d q = ½ (log q − log m) needs one, from the forward's ``log q − log m``.
    Returns ``(rows, log q − log m)``; the second is only kept for the backward."""

    generate_vmap_rule = True  # the stacked training vmaps the loss

    @staticmethod
    def forward(p, q):
        log_m = ((p + q) * 0.5).clamp_min_(1e-30).log_()
        q_gap = q.clamp_min(1e-30).log_().sub_(log_m)
        p_gap = p.clamp_min(1e-30).log_() - log_m  # not in place: stacked, p is every run's
        rows = (p * p_gap).sum(-1).add_((q * q_gap).sum(-1)).mul_(0.5)
        return rows, q_gap

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad_rows, _):
        (q_gap,) = ctx.saved_tensors
        return None, q_gap * (0.5 * grad_rows).unsqueeze(-1)
