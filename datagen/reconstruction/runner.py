"""``datagen train``: one training run of CoarseNet (``training.Trainer``), FineNet (``fine_training.FineTrainer``)
or the tracking network (``tracking_training.TrackerTrainer``)."""

from __future__ import annotations

from ..errors import DatagenError
from .fine_training import FineTrainer
from .tracking_training import TrackerTrainer
from .training import TrainConfig, Trainer


def train(config: TrainConfig, log=print, resume: bool = True) -> dict:
    """Train CoarseNet, FineNet with ``config.fine`` or the tracker with ``config.tracker``, resuming from
    ``config.out``/last.pt unless ``resume`` is false; returns the last epoch's metrics."""
    if config.fine and config.tracker:
        raise DatagenError("train FineNet (fine) or the tracker (tracker), not both at once")
    trainer = (FineTrainer if config.fine else TrackerTrainer if config.tracker else Trainer)(config, log)
    if resume:
        trainer.resume()
    return trainer.run()
