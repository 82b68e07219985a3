"""Where a training step's time goes on a GPU: wall time per step against the GPU's own kernel
time per step, and kernels launched per step (torch.profiler), for GeRA and contrastive-only.

    python scripts/gpu_step_profile.py snapshot:.gpu/emoji-f16.npz [--budget 100] [--device cuda] [--steps 200]

A step whose kernels take a small part of its wall time is bound by launching them (Python and
the CUDA driver), not by the GPU: what several processes under MPS, or batched fits, can use.
"""
import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from gera.embedded import EmbeddedTask, split_items
from gera.experiment import SeedData
from gera.methods import Contrastive, GeRA
from gera.settings import TrainConfig


def main(task: str, budget: int = 100, device: str = "cuda", steps: int = 200) -> None:
    data = EmbeddedTask.open(task)
    split = data.task.split(budget, 0)
    data.ensure(*split_items(split))
    seed_data = SeedData.prepare(data, split, 0)
    config = TrainConfig(device=device, max_steps=steps, early_stopping=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    print(f"{task}, budget {budget}, {steps} steps on {device}")
    print(f"{'':12s} {'wall ms/step':>12s} {'kernel ms/step':>14s} {'kernels/step':>12s}")
    for method in (GeRA(config), Contrastive(config)):
        method.fit(seed_data.pairs, seed_data.unpaired)  # warm-up: allocator, kernels' first use
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        method.fit(seed_data.pairs, seed_data.unpaired)
        if device == "cuda":
            torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / steps * 1e3
        with profile(activities=activities) as prof:
            method.fit(seed_data.pairs, seed_data.unpaired)
        kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        kernel_us = sum(getattr(e, "self_device_time_total", 0) or
                        getattr(e, "self_cuda_time_total", 0) for e in kernels)
        launched = sum(e.count for e in kernels)
        print(f"{type(method).__name__:12s} {wall:12.2f} {kernel_us / steps / 1e3:14.2f} "
              f"{launched / steps:12.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    main(args.task, args.budget, args.device, args.steps)
