"""Training throughput of the reference reconstructor on this machine.

    python bench/training.py --data data/train20k          # a dataset made by jobs/train20k.toml

Prints, as medians over timed steps after warm-up steps:
- the loader's cost per sample (read + face crop, with and without augmentation);
- CoarseNet's forward + backward + AdamW step (with ~564 dense points, as trained by default),
  contiguous vs channels-last memory layout;
- whole training steps (loader, network, losses) with 0, 1 and 2 DataLoader worker processes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from datagen.reconstruction.data import FaceTrainingSet, split_indices
from datagen.reconstruction.network import CoarseNet
from datagen.reconstruction.training import TrainConfig, Trainer


def median_ms(times) -> float:
    return 1e3 * float(np.median(times))


def loader_cost(data: str, size: int, count: int = 300) -> None:
    for augment in (False, True):
        dataset = FaceTrainingSet(data, split_indices(count * 10)[0], size, augment=augment)
        dataset[0]
        times = []
        for i in range(count):
            start = time.perf_counter()
            dataset[i * 7 % len(dataset)]
            times.append(time.perf_counter() - start)
        print(f"loader, augmentation {'on ' if augment else 'off'}: {median_ms(times):.2f} ms/sample")


def network_cost(size: int, batch: int, steps: int = 12) -> None:
    results = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        net = CoarseNet(100, 53, point_ids=np.arange(TrainConfig.points + 64)).to(memory_format=layout)
        optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
        image = torch.randn(batch, 3, size, size).contiguous(memory_format=layout)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            loss = sum(v.float().pow(2).mean() for v in net(image).values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            times.append(time.perf_counter() - start)
        results[layout] = median_ms(times[2:])
        print(f"CoarseNet step, batch {batch} at {size}^2, {str(layout).split('.')[-1]}: {results[layout]:.0f} ms "
              f"({batch / results[layout] * 1e3:.0f} samples/s)")
    print(f"channels-last speed-up: {results[torch.contiguous_format] / results[torch.channels_last]:.2f}x")


def training_steps(data: str, size: int, batch: int, workers: int, warm: int = 8, timed: int = 40) -> float:
    config = TrainConfig(data=data, out="/tmp/datagen-bench-training", size=size, batch_size=batch, workers=workers)
    trainer = Trainer(config, log=lambda message: None)
    loader = trainer.loader(workers)
    times, start = [], time.perf_counter()
    for i, batch_data in enumerate(loader):
        trainer.scheduled_step(batch_data, len(loader))
        now = time.perf_counter()
        if i >= warm:
            times.append(now - start)
        start = now
        if len(times) == timed:
            break
    step = median_ms(times)
    print(f"training step, {workers} loader workers: {step:.0f} ms ({batch / step * 1e3:.0f} samples/s)")
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a dataset folder (datagen generate jobs/train20k.toml)")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'CUDA' if torch.cuda.is_available() else 'CPU'}")
    loader_cost(args.data, args.size)
    network_cost(args.size, args.batch_size)
    steps = {w: training_steps(args.data, args.size, args.batch_size, w) for w in (0, 1, 2)}
    best = min(steps, key=steps.get)
    print(f"fastest: {best} loader workers; step time with 1 worker / with 0: {steps[1] / steps[0]:.2f}")


if __name__ == "__main__":
    main()
