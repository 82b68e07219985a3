"""What the Neighbourhoods tab shows: one modality's points before and after alignment, the joint
aligned space, and how well each point's k nearest neighbours survive alignment."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import plotly.graph_objects as go

from gera.alignments import Standardizer
from gera.evaluate import knn_jaccard, trustworthiness
from gera.geometry import centre_modalities, knn, modality_gap
from gera.ui import charts
from gera.ui.models import ModelSet
from gera.ui.projection import umap_2d

SIDE_NAMES = {"image": "images", "speech": "speech clips", "text": "texts"}


@dataclass(frozen=True)
class NeighbourhoodView:
    """Everything the tab draws for one (model set, method, modality, points, k); selecting a
    point or changing the colouring redraws from this without recomputing anything."""

    title: str
    side_name: str
    texts: list[str]
    classes: Optional[list[str]]
    before: np.ndarray  # (n, 2) UMAP of the original (centred, normalised) encoder space
    after: np.ndarray  # (n, 2) UMAP of the aligned space
    jaccard: np.ndarray  # (n,) per-point kNN Jaccard, original vs aligned
    nn_before: np.ndarray  # (n, k) neighbours in the original space
    nn_after: np.ndarray  # (n, k) neighbours in the aligned space
    joint: np.ndarray  # (m, 2) UMAP of both modalities' aligned points together
    joint_texts: list[str]
    joint_modality: list[str]
    joint_classes: Optional[list[str]]
    summary: dict
    k: int
    gap: float = 0.0  # distance between the two modalities' mean aligned vectors
    centred: bool = False  # the joint view has each modality mean-centred


GAP_NOTE = ("**Two islands?** That is the *modality gap*: the two heads' outputs occupy different "
            "cones of the aligned space (here the modalities' mean vectors are {gap:.2f} apart). "
            "Retrieval ranks by relative similarity, so the gap is not a failure. ")
GAP_ACTIONS = ("Tick “Centre each modality” to subtract each modality's mean (and re-normalise): "
               "partners then appear next to each other.",
               "Shown centred: each modality's mean subtracted, re-normalised, so partners can "
               "be seen next to each other.")


def _subset(n_total: int, n: int, seed: int = 0) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def compute_view(models: ModelSet, method: str, side: str, n_points: int, k: int,
                 centred: bool = False) -> NeighbourhoodView:
    """Project ``n_points`` gallery items of ``side`` ("a" or "b") before and after ``method``'s
    alignment (the same points in both), and ``n_points`` of both modalities jointly (with
    ``centred``, each modality mean-centred first: ``gera.geometry.centre_modalities``)."""
    gallery = models.gallery_a if side == "a" else models.gallery_b
    aligned_gallery = models.aligned[method][0 if side == "a" else 1]
    rows = _subset(len(gallery.indices), n_points)
    k = min(k, len(rows) - 1)
    raw = gallery.raw[rows]
    original = Standardizer.fit(raw)(raw)  # the reference gera.evaluate uses for every method
    aligned = aligned_gallery[rows]
    nn_before, _ = knn(original, k)
    nn_after, _ = knn(aligned, k)
    jaccard = knn_jaccard(original, aligned, k)

    half = max(2, n_points // 2)
    rows_a = _subset(len(models.gallery_a.indices), half, seed=1)
    rows_b = _subset(len(models.gallery_b.indices), half, seed=2)
    za, zb = models.aligned[method]
    za, zb = za[rows_a], zb[rows_b]
    gap = modality_gap(za, zb)
    if centred:
        za, zb = centre_modalities(za, zb)
    joint = umap_2d(np.concatenate([za, zb]))
    name_a, name_b = SIDE_NAMES.get(models.modality_a, "A"), SIDE_NAMES["text"]
    joint_classes = None
    if models.gallery_a.classes is not None and models.gallery_b.classes is not None:
        joint_classes = ([models.gallery_a.classes[i] for i in rows_a]
                         + [models.gallery_b.classes[i] for i in rows_b])

    summary = {"points": len(rows), "k": k, "mean_jaccard": float(jaccard.mean()),
               "median_jaccard": float(np.median(jaccard)),
               "trustworthiness": trustworthiness(original, aligned, k),
               "test_metrics": {m: v for m, v in models.metrics.get(method, {}).items()
                                if m.startswith(("knn_jaccard", "trustworthiness"))}}
    return NeighbourhoodView(
        title=f"{models.title} · {method}", side_name=name_a if side == "a" else name_b,
        texts=[gallery.texts[i] for i in rows],
        classes=None if gallery.classes is None else [gallery.classes[i] for i in rows],
        before=umap_2d(original), after=umap_2d(aligned), jaccard=jaccard,
        nn_before=nn_before, nn_after=nn_after, joint=joint,
        joint_texts=[models.gallery_a.texts[i] for i in rows_a]
                    + [models.gallery_b.texts[i] for i in rows_b],
        joint_modality=[name_a] * len(rows_a) + [name_b] * len(rows_b),
        joint_classes=joint_classes, summary=summary, k=k, gap=gap, centred=centred)


def figures(view: NeighbourhoodView, colour_by: str, selected: Optional[int]
            ) -> tuple[go.Figure, go.Figure, go.Figure, go.Figure, str, str]:
    """(before, after, joint, histogram, summary markdown, the joint plot's note).
    ``colour_by``: "class" or "jaccard"; ``selected``: a point position, or None."""
    highlight = None
    if selected is not None and 0 <= selected < len(view.texts):
        highlight = {"selected": selected, "before": view.nn_before[selected],
                     "after": view.nn_after[selected]}
    by_value = colour_by == "jaccard"
    common = dict(texts=view.texts, classes=view.classes, highlight=highlight,
                  values=view.jaccard if by_value else None,
                  value_name=f"Jaccard@{view.k}" if by_value else "")
    before = charts.scatter(view.before, title=f"Before: original {view.side_name} space",
                            **common)
    after = charts.scatter(view.after, title=f"After: aligned space ({view.title.split(' · ')[-1]})",
                           **common)
    name_a, name_b = view.joint_modality[0], view.joint_modality[-1]
    symbols = ["circle" if m == name_a else "x" for m in view.joint_modality]
    # One colour per class across both modalities, so a class's images and texts meeting (or
    # not) is what the eye sees; the symbol tells the modality.
    joint = charts.scatter(view.joint, view.joint_texts, symbols=symbols,
                           classes=view.joint_classes or view.joint_modality,
                           title=f"Joint aligned space: ○ {name_a}, × {name_b}"
                                 + (" · centred" if view.centred else ""))
    gap_note = GAP_NOTE.format(gap=view.gap) + GAP_ACTIONS[view.centred]
    return (before, after, joint, charts.jaccard_histogram(view.jaccard, view.k),
            summary_markdown(view, selected if highlight else None), gap_note)


def summary_markdown(view: NeighbourhoodView, selected: Optional[int]) -> str:
    s = view.summary
    lines = [f"**{view.title}** — {s['points']} {view.side_name}, k = {s['k']}",
             "", "| measure | value |", "|---|---|",
             f"| mean kNN Jaccard@{s['k']} | {s['mean_jaccard']:.3f} |",
             f"| median kNN Jaccard | {s['median_jaccard']:.3f} |",
             f"| trustworthiness | {s['trustworthiness']:.3f} |"]
    lines += [f"| {name} (test set, at training) | {value:.3f} |"
              for name, value in s["test_metrics"].items()]
    if selected is not None:
        kept = len(set(view.nn_before[selected]) & set(view.nn_after[selected]))
        lines += ["", f"**Point {selected}**: {view.texts[selected]} — {kept} of its {view.k} "
                      f"nearest neighbours survive alignment (Jaccard {view.jaccard[selected]:.2f})."]
    return "\n".join(lines)
