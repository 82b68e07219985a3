"""STRUCTURE's regulariser, forward and backward, for one modality's batch on one CPU thread:
``gera.losses.structure_loss`` (its Jensen–Shannon term written out, ``JensenShannonRows``)
against the same walks with the JS term through autograd, as the textbook formula was written
before, interleaved, medians. ``--compiled`` adds ``torch.compile(structure_loss)`` (Inductor's
C++ kernels on a CPU, one compile per batch shape, its seconds printed): a lever tried and left.

    python scripts/bench_structure_loss.py [--precision medium] [--repeats 30] [--compiled]

Sizes: a comparison's STRUCTURE batch at fashion-mnist N = 100 (80 pairs + 256 pool points) and
at emoji N = 3,000 (256 pairs + 256), in the image encoder's 1,280 and the text one's 384 dims.
"""
import argparse
import sys
import statistics
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
from gera.losses import similarity_walks, structure_loss  # noqa: E402


def textbook_loss(original, aligned, levels, tau=0.05):
    """The regulariser with its JS term as written before: through autograd."""
    with torch.no_grad():
        p_walks = similarity_walks(original, tau, levels)
    total = aligned.new_zeros(())
    for level, (p, q) in enumerate(zip(p_walks, similarity_walks(aligned, tau, levels)), start=1):
        m = 0.5 * (p + q)
        log_m = m.clamp_min(1e-30).log()
        kl_p = (p * (p.clamp_min(1e-30).log() - log_m)).sum(-1)
        kl_q = (q * (q.clamp_min(1e-30).log() - log_m)).sum(-1)
        total = total + (1.0 if levels == 1 else 1.0 / level) * (0.5 * (kl_p + kl_q)).mean()
    return total / levels


def main(precision: str, repeats: int, compiled: bool) -> None:
    torch.set_num_threads(1)
    torch.set_float32_matmul_precision(precision)
    generator = torch.Generator().manual_seed(0)
    print(f"STRUCTURE regulariser, forward + backward, one thread, matmul precision {precision}, "
          f"medians of {repeats} (interleaved)")
    print(f"{'batch':>6} {'dims':>5} {'levels':>6} {'textbook ms':>12} {'now ms':>8} {'ratio':>6}"
          + (f" {'compiled ms':>12} {'ratio':>6} {'compile s':>10}" if compiled else ""))
    for batch, dims in ((336, 1280), (512, 1280), (512, 384)):
        x = torch.randn(batch, dims, generator=generator)
        z = torch.randn(batch, 256, generator=generator, requires_grad=True)
        for levels in (2, 3):
            times = {textbook_loss: [], structure_loss: []}
            if compiled:  # a fresh compile per shape and level count, timed on its first call
                fused = torch.compile(structure_loss, dynamic=False)
                start = time.perf_counter()
                fused(x, z, levels).backward()
                compile_s = time.perf_counter() - start
                times[fused] = []
            for _ in range(repeats + 3):
                for loss in times:
                    start = time.perf_counter()
                    loss(x, z, levels).backward()
                    times[loss].append(time.perf_counter() - start)
            old, new, *fused_ms = (1000 * statistics.median(t[3:]) for t in times.values())
            print(f"{batch:>6} {dims:>5} {levels:>6} {old:>12.2f} {new:>8.2f} {old / new:>5.2f}×"
                  + "".join(f" {f:>12.2f} {new / f:>5.2f}× {compile_s:>10.1f}" for f in fused_ms))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="medium")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--compiled", action="store_true")
    args = parser.parse_args()
    main(args.precision, args.repeats, args.compiled)
