"""Train the tracking network (``tracking.TrackerNet``) on a video dataset's frame pairs:
``datagen train --tracker --coarse RUN/best.pt``. The CoarseNet checkpoint initialises its encoder,
reconstructs each clip's first frame when tracking, and rides along in the tracker's checkpoints.

Loss: CoarseNet's (parameters, dense vertices, landmark reprojection; no dense points). Held-out
metrics per epoch: those of CoarseNet's evaluation on held-out pairs (each from a disturbed previous
frame); ``datagen evaluate`` tracks whole held-out clips (``tracking_evaluation``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..errors import DatagenError
from .evaluation import evaluate_network
from .inference import load_checkpoint
from .network import FaceDecoder
from .tracking import TrackerNet, TrackingPairs
from .training import LOSS_WEIGHTS, Trainer, face_vertex_ids


class TrackerTrainer(Trainer):
    KIND = "tracker"
    NAME = "the tracker"

    def __init__(self, config, log=print):
        if not isinstance(config.data, (str, Path)):
            raise DatagenError("the tracker trains on one video dataset (one --data)")
        super().__init__(config, log)

    def build(self, train_ids, held_ids) -> None:
        config = self.config
        if not config.coarse:
            config = self.config = dataclasses.replace(config, coarse=self.resumed_coarse())
        state = load_checkpoint(config.coarse)
        if state.get("kind", "coarse") != "coarse":
            raise DatagenError(f"{config.coarse} is a {state.get('kind')} checkpoint: the tracker builds on a CoarseNet's")
        if state["model"]["checksum"] != self.model.checksum:
            raise DatagenError(f"{config.coarse} was trained on model '{state['model']['name']}', the data uses "
                               f"'{self.model.name}' (or another version of it)")
        self.coarse_state = {k: v for k, v in state.items() if k != "optimiser"}
        coarse_config = state["config"]
        # the split is by clip (a sample is a clip): a held-out clip's pairs are all held out; evaluate_samples counts pairs
        frames = max(2, self.dataset.frames)
        self.train_set = TrackingPairs(config.data, train_ids, coarse_config["size"], config.augment, config.seed)
        held_clips = (held_ids if len(held_ids) else train_ids[-1:])[:max(1, config.evaluate_samples // (frames - 1))]
        self.held_out = TrackingPairs(config.data, held_clips, coarse_config["size"], augment=False, seed=config.seed)
        self.size = coarse_config["size"]
        self.net = TrackerNet(self.model.num_identity, self.model.num_expression, coarse_config["width"])
        self.net.load_coarse(state["net"])
        self.net = self.net.to(self.device, memory_format=torch.channels_last)
        self.ids = face_vertex_ids(self.model)
        self.decoder = FaceDecoder(self.model, self.ids).to(self.device)
        self.point_ids = np.zeros(0, int)
        self.landmark_rows = torch.from_numpy(np.searchsorted(self.ids, self.model.landmark_ids)).to(self.device)
        if len(self.train_set) < config.batch_size:
            raise DatagenError(f"{config.data}: {len(self.train_set)} training frame pairs, fewer than one batch of "
                               f"{config.batch_size}")

    def extra_state(self) -> dict:
        return {"kind": "tracker", "coarse": self.coarse_state}

    def losses(self, batch, predicted):
        config = self.config
        self.config = dataclasses.replace(config, size=self.size)  # the crops are the CoarseNet's size
        try:
            return super().losses(batch, predicted)
        finally:
            self.config = config

    def total_loss(self, batch) -> torch.Tensor:
        image = batch["image"].contiguous(memory_format=torch.channels_last)
        predicted = {k: v.float() for k, v in self.net(image, batch["previous"]).items()}
        parts = self.losses(batch, predicted)
        parts.pop("identity")  # carried, not predicted: its error is the first frame's
        return sum(LOSS_WEIGHTS[k] * v for k, v in parts.items())

    @torch.no_grad()
    def evaluate(self) -> dict:
        return evaluate_network(self.net, self.model, self.held_out, self.size, self.device)
