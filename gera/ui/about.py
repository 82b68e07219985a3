"""The About tab: what GeRA is, its loss, the project's documented choices, the measured
results with the commands that made them, and their figures — read from the repository at
start-up, so the tab never disagrees with README.md, results/ or checkpoints/. The figures are
drawn here from the results' JSON by the library's own function (``gera.results_set.figure``),
so the app needs no image files and no image exporter."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import gradio as gr

from gera import results_set
from gera.report import TABLE_METRICS
from gera.ui.config import REPO_ROOT
from gera.ui.models import ShippedGroup

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]

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


def result_commands(script: Path, results: Path) -> dict[str, str]:
    """results/NAME.txt → the command that wrote it: the named experiments (and their sweeps'
    summaries), then what the reproduce script writes besides (the benchmarks)."""
    commands = {"report-all": "python -m gera report --all"}
    for experiment in results_set.EXPERIMENTS:
        commands[experiment.name] = experiment.command
        summary = results_set.summary_command(experiment, results)
        if summary:
            commands[f"{experiment.name}-summary"] = summary
    for line in script.read_text().splitlines() if script.is_file() else []:
        match = _REDIRECT_LINE.search(line.strip())
        if match:
            module, args, name = match.groups()
            commands.setdefault(name, f"python -m {module}{args}")
    return commands


def measured_results(results: Path, script: Path) -> str:
    commands = result_commands(script, results)
    # A table saved by an earlier command than today's says so, and how it differs.
    earlier = {e.name: f" — saved by an earlier command ({'; '.join(problems)})"
               for e in results_set.EXPERIMENTS
               if (problems := results_set.out_of_date(e, results_set.load(e, results)))
               and problems != ["missing"]}
    blocks = []
    for path in sorted(results.glob("*.txt")):
        text = path.read_text().strip()
        if not text:
            continue
        command = commands.get(path.stem, f"see {script.name}")
        blocks.append(f"**results/{path.name}** — `{command}`{earlier.get(path.stem, '')}"
                      f"\n\n```\n{text}\n```")
    if not blocks:
        return ("### Measured results\nNo measured results in `results/` yet: "
                "`python -m gera report --all` writes them (hours on 2 CPU cores).")
    return ("### Measured results\nEach table is the output of the command beside it "
            f"(all of them: `python -m gera report --all`, with the benchmarks "
            f"`bash scripts/{script.name}`).\n\n" + "\n\n".join(blocks))


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


def figure_or_note(experiment: results_set.Experiment, results: Path):
    """The experiment's figure sized for the page, or a note saying why there is none."""
    try:
        fig = results_set.figure(experiment, results)
    except (KeyError, TypeError, ValueError, IndexError, StopIteration) as err:
        return f"results/{experiment.name}.json cannot be drawn ({type(err).__name__}: {err})."
    if fig is None:
        return results_set.missing_note(experiment)
    return fig.update_layout(width=None, autosize=True)  # the page's width, not the PNG's


def build(results: Path, groups: Iterable[ShippedGroup]) -> None:
    """The tab's content, inside ``gr.Tab("About")``: the text, the figures (one ``gr.Plot``
    per experiment with a figure, or its note), then the tables."""
    scripts = REPO_ROOT / "scripts"
    gr.Markdown("\n\n".join([INTRO, documented_choices()]), latex_delimiters=LATEX)
    gr.Markdown("### Figures\nDrawn from `results/*.json` (mean ± std over seeds; each "
                "caption names the command that made its data). `python -m gera report --all` "
                "also writes them as `results/figures/NAME.html` and `.png`.")
    for experiment in filter(results_set.has_figure, results_set.EXPERIMENTS):
        shown = figure_or_note(experiment, results)
        if isinstance(shown, str):
            gr.Markdown(f"**{experiment.name}** — {shown}")
        else:
            gr.Plot(shown, label=experiment.name)
    gr.Markdown("\n\n".join(p for p in [
        measured_results(results, scripts / "reproduce-results.sh"),
        shipped_results(groups, scripts / "make_checkpoints.sh")] if p))
