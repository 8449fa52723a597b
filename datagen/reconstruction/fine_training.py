"""Train FineNet (``datagen train --fine --coarse RUN/best.pt``) on shards with fine ground truth.

The loop, schedule, checkpoints and logs are CoarseNet's (``training.Trainer``); what differs:
the samples (``fine_data.FineTrainingSet``: the crop, the CoarseNet checkpoint's reconstruction
rendered into it, the fine ground truth), the network (``finenet.FineNet``), the loss (depth L1 up to
an offset + the fine normals' distance to the truth's, ``finenet.fine_losses``) and the held-out metrics
(``fine_evaluation``). ``best.pt`` keeps the lowest held-out fine depth error and carries the
CoarseNet it builds on, so one file reconstructs a detailed face (``fine_inference``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..errors import DatagenError
from ..files import file_sha256
from .fine_data import FineTrainingSet, coarse_maps_key, compute_coarse_maps, load_coarse_maps, require_fine_fields
from .fine_evaluation import evaluate_fine
from .finenet import NORMAL_WEIGHT, FineNet, fine_input, fine_losses
from .inference import Reconstructor, load_checkpoint
from .training import Trainer

COARSE_INPUTS = "coarse-inputs"  # in the run folder: the coarse reconstructions FineNet reads (memory-mapped)


class FineTrainer(Trainer):
    KIND = "fine"
    NAME = "FineNet"
    BEST_METRIC = "fine_depth_error_mm"
    CURVES = (("fine_depth_error_mm", "fine depth error, mm"), ("coarse_depth_error_mm", "coarse depth error, mm"))

    def build(self, train_ids, held_ids) -> None:
        config = self.config
        if not config.coarse:
            config = self.config = dataclasses.replace(config, coarse=self.resumed_coarse())
        require_fine_fields(config.data)
        if config.size % 8:
            raise DatagenError(f"FineNet's input size must be a multiple of 8 (its U-Net halves it 3 times), not {config.size}")
        state = load_checkpoint(config.coarse)
        if state.get("kind") == "fine":
            state = state["coarse"]
        if state["model"]["checksum"] != self.model.checksum:
            raise DatagenError(f"{config.coarse} was trained on model '{state['model']['name']}', the data uses "
                               f"'{self.model.name}' (or another version of it)")
        self.coarse_state = {k: v for k, v in state.items() if k != "optimiser"}
        key = coarse_maps_key(file_sha256(config.coarse), config.data, config.size)
        maps = self.coarse_maps(Reconstructor(config.coarse, config.model_dir, state=state), key,
                                list(train_ids) + list(held_ids))
        self.train_set = FineTrainingSet(config.data, train_ids, maps, config.size, augment=config.augment, seed=config.seed)
        self.held_out = FineTrainingSet(config.data, held_ids, maps, config.size, augment=False)
        self.net = FineNet(config.width).to(self.device, memory_format=torch.channels_last)

    def coarse_maps(self, reconstructor, key: str, positions):
        folder = Path(self.config.out) / COARSE_INPUTS
        maps = load_coarse_maps(folder, key, positions)
        if maps is None:
            self.log(f"reconstructing {len(positions)} samples with {self.config.coarse} (once; kept in {folder})")
            maps = compute_coarse_maps(reconstructor, self.config.data, positions, self.config.size, key, folder,
                                       log=self.log)
        return maps

    def extra_state(self) -> dict:
        return {"kind": "fine", "coarse": self.coarse_state}

    def total_loss(self, batch) -> torch.Tensor:
        x = fine_input(batch["image"], batch["coarse_depth"], batch["coarse_normal"])
        residual = self.net(x.contiguous(memory_format=torch.channels_last))
        parts = fine_losses(residual, batch)
        return parts["depth"] + NORMAL_WEIGHT * parts["normal"]

    @torch.no_grad()
    def evaluate(self) -> dict:
        return evaluate_fine(self.net, self.held_out, self.device)
