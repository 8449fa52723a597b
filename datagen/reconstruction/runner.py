"""``datagen train``: one training run of CoarseNet (``training.Trainer``) or FineNet (``fine_training.FineTrainer``)."""

from __future__ import annotations

from .fine_training import FineTrainer
from .training import TrainConfig, Trainer


def train(config: TrainConfig, log=print, resume: bool = True) -> dict:
    """Train CoarseNet, or FineNet with ``config.fine``, resuming from ``config.out``/last.pt unless
    ``resume`` is false; returns the last epoch's metrics."""
    trainer = (FineTrainer if config.fine else Trainer)(config, log)
    if resume:
        trainer.resume()
    return trainer.run()
