"""Does training several fits as one stacked model (batched heads) pay on a CPU? Times a step of
K image-side MLP heads (1,280 → 512 → 256 with the skip, the default) trained as one stacked
model — batched products (``bmm``) and one fused AdamW — per head, on one thread.

    python scripts/stacked_heads_cpu.py [--stack 1,3,6] [--rows 256] [--steps 50]

Equal milliseconds per head for every K mean the products are the arithmetic, not the overhead
around them: batching them saves nothing here (on a launch-bound GPU it would).
"""
import argparse
import time

import torch
import torch.nn.functional as F


def ms_per_head(stack: int, rows: int, steps: int, d_in=1280, hidden=512, dim=256) -> float:
    torch.manual_seed(0)
    pool = torch.randn(5000, d_in)
    params = [torch.nn.Parameter(p) for p in (
        0.02 * torch.randn(stack, d_in, hidden), torch.zeros(stack, 1, hidden),
        0.02 * torch.randn(stack, hidden, dim), torch.zeros(stack, 1, dim),
        0.02 * torch.randn(stack, d_in, dim))]
    w1, b1, w2, b2, skip = params
    opt = torch.optim.AdamW(params, lr=1e-3, fused=True)

    def step():
        x = pool[torch.randint(0, len(pool), (stack, rows))]
        z = F.normalize(torch.baddbmm(b2, F.gelu(torch.baddbmm(b1, x, w1)), w2) + x @ skip, dim=-1)
        loss = (z[..., :10] ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps / stack * 1e3


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="1,3,6")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for k in map(int, args.stack.split(",")):
        print(f"{k} stacked heads: {ms_per_head(k, args.rows, args.steps):.1f} ms per head per step")
