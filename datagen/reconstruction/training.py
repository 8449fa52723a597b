"""Train CoarseNet on a dataset's shards: losses, the loop, checkpoints, logs, the curve.

Loss = parameter regression (identity, expression, pose, camera, lighting)
     + dense vertices (mm, model space, decoded in the graph from both parameter sets)
     + landmark reprojection (pixels / image size, visible landmarks, with the sample's camera)
     + dense 2D points: the Gaussian negative log-likelihood of the network's crop positions of
       ``points`` face vertices (``dense_vertex_ids``) against their true projections, so that
       each point's uncertainty is learnt with it; ``refine`` fits the model to them.
The run is resumable: ``last.pt`` holds the network, the optimiser, the epoch and the time spent;
``best.pt`` the network with the lowest held-out vertex error; ``metrics.csv`` one row per
epoch; ``curve.png`` the curves. CPU works; a CUDA GPU is used when there is one, with mixed
precision.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import DatagenError
from ..files import atomic_file, atomic_write_text
from ..progress import format_duration
from .data import DatasetMix, FaceTrainingSet, data_paths, translation_of
from .evaluation import evaluate_network
from .network import POINT_LOG_SIGMA, CoarseNet, FaceDecoder

# Shape (identity, expression, vertices) weighs as much as pose: with lighter shape terms a first
# 20k-sample run learnt pose and camera in 3 epochs but left identity and expression at the prior.
LOSS_WEIGHTS = {"identity": 3.0, "expression": 30.0, "rotation": 10.0, "position": 10.0, "scale": 1.0,
                "light": 0.1, "vertices": 1.0, "landmarks": 10.0, "points": 1.0}
GRADIENT_CLIP = 100.0  # global gradient norm; steady-state norms are ~10
MAX_BAD_STEPS = 20  # steps with a non-finite loss (skipped) before training stops


@dataclass
class TrainConfig:
    data: str | list  # a dataset folder, or several trained on together (data.DatasetMix)
    out: str
    epochs: int = 10
    minutes: float = 0.0  # a time budget (0 = none): training stops, and the learning rate decays, by it
    steps: int = 0  # a budget of optimiser steps (0 = none), the same on a busy machine as on an idle one
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 300  # linear learning-rate warm-up (at most one epoch): a first full-size Adam step throws the wide head far off
    size: int = 112  # network input, pixels: a square crop around the face (data.face_crop_box)
    width: int = 32  # channels of the first stage
    points: int = 500  # dense 2D points the network predicts and the reconstruction is fitted to (0: none)
    workers: int | None = None  # DataLoader worker processes (augmentation runs there); None: loader_workers()
    held_out: float = 0.05
    evaluate_samples: int = 1000  # held-out samples scored after each epoch
    seed: int = 0
    model_dir: str | None = None
    progress_seconds: float = 30.0  # a progress line within each epoch at most this often
    augment: bool = True  # crop jitter, colour, blur, noise and JPEG on the training crops (data.FaceTrainingSet)
    fine: bool = False  # train FineNet (fine_training.py) on top of the CoarseNet checkpoint ``coarse``
    tracker: bool = False  # train the tracking network (tracking_training.py), from the CoarseNet ``coarse``
    coarse: str = ""


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def loader_workers(device: torch.device) -> int:
    """Loader processes by default: none on a small CPU-only machine, where the network already
    uses every core and a worker process only competes with it (2 cores: 0.37 s a step without,
    0.43 s with one), else up to 8, leaving a core to the training process."""
    cores = os.cpu_count() or 1
    if device.type == "cpu" and cores <= 4:
        return 0
    return max(1, min(8, cores - 1))


def dense_vertex_ids(model, points: int) -> np.ndarray:
    """The vertices whose 2D positions a network with ``points`` dense points predicts (empty for 0)."""
    return face_vertex_ids(model, points) if points else np.zeros(0, int)


def true_projection(decoder: FaceDecoder, batch: dict, size: int) -> torch.Tensor:
    """(B, D, 2) crop pixels of ``decoder``'s vertices under a FaceTrainingSet batch's true parameters."""
    translation = translation_of(batch["position"], batch["scale"], batch["intrinsics"], size)
    return decoder.project(decoder(batch["identity"], batch["expression"]), batch["rotation"], translation,
                           batch["intrinsics"])


def face_vertex_ids(model, count: int = 2000) -> np.ndarray:
    """The face region (or every vertex) subsampled to ``count`` ids, plus the 68 landmarks."""
    face = np.flatnonzero(model.region_vertices("face")) if "face" in model.region_names else np.arange(model.num_vertices)
    if len(face) == 0:
        face = np.arange(model.num_vertices)
    pick = face[np.linspace(0, len(face) - 1, min(count, len(face))).astype(int)]
    return np.unique(np.concatenate([pick, model.landmark_ids]))


class Trainer:
    NAME = "CoarseNet"
    KIND = "coarse"  # the network a run folder's checkpoints hold ("kind" in them; older ones: coarse)
    BEST_METRIC = "vertex_error_mm"  # best.pt: the lowest held-out value of this
    CURVES = (("error_ratio", "vertex error / mean face"), ("landmark_nme", "landmark NME"))

    def __init__(self, config: TrainConfig, log=print):
        self.config, self.log = config, log
        torch.manual_seed(config.seed)
        mix = DatasetMix(config.data, model_dir=config.model_dir)
        self.dataset = mix.parts[0]
        self.model = self.dataset.model()
        self.device = device()
        train_ids, held_ids = mix.split(config.held_out)
        if len(train_ids) < config.batch_size and not config.tracker:  # the tracker's batches are of frame pairs
            raise DatagenError(f"{', '.join(data_paths(config.data))}: {len(train_ids)} training samples, fewer "
                               f"than one batch of {config.batch_size}")
        self.out = Path(config.out)
        self.build(train_ids, mix.taking_turns(held_ids)[:config.evaluate_samples])
        self.optimiser = torch.optim.AdamW(self.net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.epoch, self.step, self.seconds, self.history = 0, 0, 0.0, []
        self.bad_steps = 0
        self.best = math.inf

    def build(self, train_ids: np.ndarray, held_ids: np.ndarray) -> None:
        """The training and held-out sets and the network (and what its losses need)."""
        config = self.config
        self.train_set = FaceTrainingSet(config.data, train_ids, config.size, augment=config.augment, seed=config.seed)
        self.held_out = FaceTrainingSet(config.data, held_ids, config.size, augment=False)
        # channels-last convolutions: about 20% faster on a CPU (oneDNN), and what tensor cores want
        self.point_ids = dense_vertex_ids(self.model, config.points)
        self.net = CoarseNet(self.model.num_identity, self.model.num_expression, config.width,
                             point_ids=self.point_ids).to(self.device, memory_format=torch.channels_last)
        self.ids = face_vertex_ids(self.model)
        self.decoder = FaceDecoder(self.model, self.ids).to(self.device)
        self.point_decoder = FaceDecoder(self.model, self.point_ids).to(self.device)
        self.landmark_rows = torch.from_numpy(np.searchsorted(self.ids, self.model.landmark_ids)).to(self.device)

    # --- state

    def save(self, name: str, resumable: bool = True) -> None:
        """A checkpoint; only a resumable one (last.pt) carries the optimiser's state, 2/3 of its size."""
        self.out.mkdir(parents=True, exist_ok=True)
        state = {"config": dataclasses.asdict(self.config), "model": {"name": self.model.name,
                 "checksum": self.model.checksum, "job_model": self.dataset.manifest["model"].get("job_model")},
                 "net": self.net.state_dict(), "epoch": self.epoch,
                 "step": self.step, "seconds": self.seconds, "history": self.history, "best": self.best,
                 **self.extra_state()}
        if resumable:
            state["optimiser"] = self.optimiser.state_dict()
        with atomic_file(self.out / name) as tmp:
            torch.save(state, tmp)

    def extra_state(self) -> dict:
        """What a checkpoint of this kind of network carries besides the common state."""
        return {}

    def resumed_coarse(self) -> str:
        """The CoarseNet of the run being resumed (its config names it), for a network built on one
        (FineNet, the tracker); else one clear error."""
        last = Path(self.config.out) / "last.pt"
        coarse = torch.load(last, map_location="cpu", weights_only=False)["config"].get("coarse", "") if last.exists() else ""
        if not coarse:
            raise DatagenError(f"{self.NAME} builds on a CoarseNet: give its checkpoint (--coarse RUN/best.pt)")
        if not Path(coarse).exists():
            raise DatagenError(f"{last} was trained on the CoarseNet {coarse}, which is gone: give it again with --coarse")
        return coarse

    def resume(self) -> bool:
        path = self.out / "last.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("kind", "coarse") != self.KIND:
            raise DatagenError(f"{path} is a {state.get('kind', 'coarse')} run's, not a {self.KIND} one's: give this "
                               "run a folder of its own (or --fresh to replace it)")
        self.net.load_state_dict(state["net"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.epoch, self.step, self.seconds = state["epoch"], state["step"], state["seconds"]
        self.history, self.best = state["history"], state["best"]
        self.log(f"resuming {path}: epoch {self.epoch}, {self.seconds / 60:.1f} min trained")
        return True

    # --- the loop

    def progress(self, steps_per_epoch: int) -> float:
        by_steps = self.step / max(1, steps_per_epoch * self.config.epochs)
        by_time = self.seconds / (60 * self.config.minutes) if self.config.minutes else 0.0
        by_budget = self.step / self.config.steps if self.config.steps else 0.0
        return min(1.0, max(by_steps, by_time, by_budget))

    def learning_rate(self, steps_per_epoch: int) -> float:
        warm = min(1.0, (self.step + 1) / max(1, min(self.config.warmup_steps, steps_per_epoch)))
        return self.config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * self.progress(steps_per_epoch)))

    def loader(self, workers: int | None = None) -> torch.utils.data.DataLoader:
        workers = loader_workers(self.device) if workers is None else workers
        # Workers are not persistent: each epoch's workers get the dataset with its new epoch (augmentations).
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.config.batch_size, shuffle=True,
                                           num_workers=workers, drop_last=True,
                                           generator=torch.Generator().manual_seed(self.config.seed))

    def scheduled_step(self, batch, steps_per_epoch: int) -> tuple[float, float]:
        """One optimiser step at the schedule's learning rate: (loss, learning rate)."""
        lr = self.learning_rate(steps_per_epoch)
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        loss = self.train_step(batch)
        self.step += 1
        return loss, lr

    def run(self) -> dict:
        loader = self.loader(self.config.workers)
        while self.epoch < self.config.epochs and self.progress(len(loader)) < 1.0:
            self.train_set.epoch = self.epoch  # new augmentations per epoch
            started, losses = time.perf_counter(), []
            epoch_started = last_report = time.perf_counter()
            self.net.train()
            for done, batch in enumerate(loader, 1):
                loss, lr = self.scheduled_step(batch, len(loader))
                losses.append(loss)
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
                if self.progress(len(loader)) >= 1.0:
                    break
                if started - last_report >= self.config.progress_seconds:
                    self.log(self.epoch_progress(done, len(loader), losses, started - epoch_started))
                    last_report = started
            self.epoch += 1
            metrics = self.evaluate()
            row = {"epoch": self.epoch, "step": self.step, "minutes": round(self.seconds / 60, 2), "lr": lr,
                   "train_loss": float(np.nanmean(losses)), **{k: v for k, v in metrics.items() if not isinstance(v, dict)}}
            self.history.append(row)
            self.log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            if metrics[self.BEST_METRIC] < self.best:
                self.best = metrics[self.BEST_METRIC]
                self.save("best.pt", resumable=False)
            self.save("last.pt")
            self.write_logs(metrics)
        return self.history[-1] if self.history else {}

    def epoch_progress(self, done: int, batches: int, losses: list, seconds: float) -> str:
        rate = done * self.config.batch_size / seconds if seconds > 0 else 0.0
        left = (batches - done) * seconds / done
        recent = [v for v in losses[-50:] if math.isfinite(v)]
        loss = f"{np.mean(recent):.4g}" if recent else "nan"
        return (f"epoch {self.epoch + 1}: batch {done}/{batches}, loss {loss} (last {len(losses[-50:])} batches), "
                f"{rate:.1f} samples/s, epoch ends in {format_duration(left)}")

    def losses(self, batch, predicted) -> dict[str, torch.Tensor]:
        out = {}
        for name in ("identity", "expression", "rotation", "position", "scale", "light"):
            out[name] = torch.mean((predicted[name] - batch[name]) ** 2)
        shape = self.decoder(predicted["identity"], predicted["expression"])
        true_shape = self.decoder(batch["identity"], batch["expression"])
        out["vertices"] = (shape - true_shape).norm(dim=-1).mean()
        translation = translation_of(predicted["position"], predicted["scale"], batch["intrinsics"], self.config.size)
        landmarks = self.decoder.project(shape[:, self.landmark_rows], predicted["rotation"], translation,
                                         batch["intrinsics"])
        visible = batch["visible"]
        error = ((landmarks - batch["landmarks"]).norm(dim=-1) / self.config.size).clamp(max=1.0)  # robust to wild starts
        out["landmarks"] = (error * visible).sum() / visible.sum().clamp(min=1)
        if self.net.num_points:
            out["points"] = self.point_loss(batch, predicted)
        return out

    def point_loss(self, batch, predicted) -> torch.Tensor:
        """Gaussian negative log-likelihood (2D, per point, up to a constant) of the dense points, pixels."""
        truth = true_projection(self.point_decoder, batch, self.config.size)
        points = (predicted["points"] + 0.5) * self.config.size
        log_sigma = predicted["point_log_sigma"].clamp(*POINT_LOG_SIGMA)
        squared = ((points - truth) ** 2).sum(-1)
        return (0.5 * squared * torch.exp(-2 * log_sigma) + 2 * log_sigma).mean()

    def total_loss(self, batch) -> torch.Tensor:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
            predicted = self.net(batch["image"])
        predicted = {k: v.float() for k, v in predicted.items()}
        parts = self.losses(batch, predicted)
        return sum(LOSS_WEIGHTS[k] * v for k, v in parts.items())

    def train_step(self, batch) -> float:
        loss = self.total_loss({k: v.to(self.device) for k, v in batch.items()})
        if not torch.isfinite(loss):
            self.bad_steps += 1
            if self.bad_steps > MAX_BAD_STEPS:
                raise DatagenError(f"training diverged: the loss was not finite in {self.bad_steps} steps "
                                   f"(last at step {self.step}); try a lower --learning-rate")
            return math.nan
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimiser)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), GRADIENT_CLIP)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        return loss.item()

    @torch.no_grad()
    def evaluate(self) -> dict:
        return evaluate_network(self.net, self.model, self.held_out, self.config.size, self.device)

    def write_logs(self, metrics: dict) -> None:
        with atomic_file(self.out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.history[-1]))
            writer.writeheader()
            writer.writerows(self.history)
        atomic_write_text(self.out / "evaluation.json", json.dumps(metrics, indent=1))
        plot_curves(self.history, self.out / "curve.png", self.CURVES)


def plot_curves(history: list[dict], path: Path, curves, size=(640, 360)) -> None:
    """Training loss and held-out metrics (``curves``: (key, label) pairs) per epoch, drawn with PIL
    (no plotting dependency)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    w, h, m = size[0], size[1], 40
    draw.rectangle((m, m // 2, w - m // 2, h - m), outline="black")
    colours = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
    series = [(key, label, colour) for (key, label), colour in zip((("train_loss", "training loss"),) + tuple(curves), colours)]
    epochs = [r["epoch"] for r in history]
    for i, (key, label, colour) in enumerate(series):
        values = np.array([r[key] for r in history], float)
        if len(values) == 0:
            continue
        top = values.max() if values.max() > 0 else 1
        xs = [m + (w - 1.5 * m) * (e - epochs[0]) / max(1, epochs[-1] - epochs[0]) for e in epochs]
        ys = [h - m - (h - 1.5 * m) * v / top for v in values]
        draw.line(list(zip(xs, ys)), fill=colour, width=2) if len(xs) > 1 else draw.ellipse((xs[0] - 2, ys[0] - 2, xs[0] + 2, ys[0] + 2), fill=colour)
        draw.text((m + 5, m // 2 + 5 + 14 * i), f"{label} (max {top:.3g}, last {values[-1]:.3g})", fill=colour)
    draw.text((w // 2 - 20, h - m + 8), "epoch", fill="black")
    image.save(path)
