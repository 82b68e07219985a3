"""The About tab's text: what GeRA is, its loss, the project's documented choices, and the
measured results with the commands that made them — read from the repository at start-up, so the
tab never disagrees with README.md, results/ or checkpoints/."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from gera.report import TABLE_METRICS
from gera.ui.config import REPO_ROOT
from gera.ui.models import ShippedGroup

INTRO = r"""
### What GeRA is
GeRA (Klebe et al., *GeRA: Label-Efficient Geometrically Regularized Alignment*, arXiv 2310.00672)
aligns two **frozen, pretrained, unimodal encoders** — here an image or speech encoder and a text
encoder — with only a **few paired examples** plus large **unpaired** pools. Two small heads
$g_A$, $g_B$ map each encoder's embeddings into one shared space. Pairs pull partners together; the
unpaired data keeps each modality's own neighbourhoods intact while that happens, so the aligned
space inherits the geometry the pretrained encoders already learned.

### The loss
$$
\mathcal{L} = \mathcal{L}_{con} + \alpha\,\big(\mathcal{L}_{geo}^{A} + \mathcal{L}_{geo}^{B}\big)
$$

- $\mathcal{L}_{con}$: CLIP's symmetric InfoNCE over a batch of pairs (cosine similarity,
  learned temperature).
- $\mathcal{L}_{geo}^{A} = \operatorname{mean}_i \lVert T_i - \tilde T_i \rVert_F^2$: for anchors
  $i$ drawn from the paired **and unpaired** points of modality A, with neighbourhood
  $N_i = \{i\} \cup \mathrm{kNN}(i)$ found once in the original space, $T_i = D_i^{-1} W_i$ is the
  row-normalised kernel (diffusion operator) on $N_i$ in the original space and $\tilde T_i$ the
  same on $g_A(N_i)$ in the aligned space. Heat kernel $W[a,b] = \exp(-\lVert u_a-u_b\rVert^2/\varepsilon)$
  with ONE $\varepsilon$, fixed from the original space, for both.
- $\alpha = 0$ is exactly the contrastive-only baseline (same heads, optimiser, early stopping).

Baselines compared on the same cached embeddings, splits and tuning budget: contrastive-only,
Procrustes, ASIF (training-free relative representations) and regularised CCA.
"""

_CHOICES_HEADING = "## The method as implemented (documented choices)"
_RESULT_LINE = re.compile(r'^run\s+(\S+)\s+(.+)$')
_REDIRECT_LINE = re.compile(r'-m (gera[\w.]*)(.*?)\s*>\s*results/(\S+)\.txt')


def documented_choices(readme: Path = REPO_ROOT / "README.md") -> str:
    """README's section on the choices the paper leaves open, as it stands."""
    text = readme.read_text() if readme.is_file() else ""
    start = text.find(_CHOICES_HEADING)
    if start < 0:
        return "See README.md for the choices this project makes where the paper is silent."
    end = text.find("\n## ", start + len(_CHOICES_HEADING))
    body = text[start + len(_CHOICES_HEADING):end if end > 0 else None].strip()
    return ("### Documented choices (this project's, not the paper's)\n" + body)


def result_commands(script: Path) -> dict[str, str]:
    """results/NAME.txt → the command that wrote it, read from the reproduce script."""
    commands = {}
    if not script.is_file():
        return commands
    for line in script.read_text().splitlines():
        line = line.strip()
        match = _RESULT_LINE.match(line)
        if match:
            name, args = match.groups()
            commands[name] = f"python -m gera {args} --json results/{name}.json"
            continue
        match = _REDIRECT_LINE.search(line)
        if match:
            module, args, name = match.groups()
            commands[name] = f"python -m {module}{args}"
    return commands


def measured_results(results: Path, script: Path) -> str:
    commands = result_commands(script)
    blocks = []
    for path in sorted(results.glob("*.txt")):
        text = path.read_text().strip()
        if not text:
            continue
        command = commands.get(path.stem, f"see {script.name}")
        blocks.append(f"**results/{path.name}** — `{command}`\n\n```\n{text}\n```")
    if not blocks:
        return ("### Measured results\nNo measured results in `results/` yet: "
                f"`bash scripts/{script.name}` writes them (about an hour on 2 CPU cores).")
    return ("### Measured results\nEach table is the output of the command beside it "
            f"(all of them: `bash scripts/{script.name}`).\n\n" + "\n\n".join(blocks))


def shipped_results(groups: Iterable[ShippedGroup], script: Path) -> str:
    lines = []
    for group in groups:
        meta = group.meta
        present = {m for ms in group.metrics.values() for m in ms}
        metrics = [m for m in TABLE_METRICS if m in present]
        lines += [f"**{group.task_name}**, N = {meta.get('budget')}, seed {meta.get('seed')}, "
                  f"{meta.get('encoder_a')} ↔ {meta.get('encoder_b')} (test set, one seed):", "",
                  "| method | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        lines += [f"| {method} | " + " | ".join(f"{100 * ms[m]:.1f}" if m in ms else "–"
                                                for m in metrics) + " |"
                  for method, ms in group.metrics.items()]
        lines.append("")
    if not lines:
        return ""
    return ("### The shipped checkpoints (Retrieval and Neighbourhoods tabs)\nMade by "
            f"`bash scripts/{script.name}`; one seed each, so read these as examples, not as "
            "the comparison above.\n\n" + "\n".join(lines))


def about_markdown(results: Path, groups: Iterable[ShippedGroup]) -> str:
    scripts = REPO_ROOT / "scripts"
    parts = [INTRO, documented_choices(),
             measured_results(results, scripts / "reproduce-results.sh"),
             shipped_results(groups, scripts / "make_checkpoints.sh")]
    return "\n\n".join(p for p in parts if p)
