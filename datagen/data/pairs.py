"""Consecutive frame pairs of a video dataset, as a map-style dataset: ``ShardedDataset(path).pairs()``.

Pair ``j`` is frames t and t+1 of clip ``j // (K - 1)`` with ``t = j % (K - 1)``. It holds every
per-frame field with a leading axis of 2 (frames t, t+1), the clip's per-sample fields, that pair's
flow fields (``flow_forward``, ``flow_backward``, ``occluded_forward``, ``occluded_backward``), the
parameter and landmark deltas (``delta/<name>`` = frame t+1's minus frame t's) and ``frame`` = t.
A clip is one HDF5 chunk per field, so reading a pair decompresses its clip: the last clip read is
kept, and ``ClipOrderSampler`` shuffles clips while keeping each clip's pairs together.
"""

from __future__ import annotations

import numpy as np

from .fields import REGISTRY

DELTAS = ("params/rotation", "params/translation", "params/expression", "params/intrinsics", "params/light_sh",
          "landmarks_2d", "landmarks_3d")


class FramePairs:
    def __init__(self, dataset):
        self.dataset = dataset
        self.frames = dataset.frames
        if self.frames < 2:
            raise ValueError(f"{dataset.path} holds stills ([video] frames = 1): it has no frame pairs")
        self._cached = (None, None)

    def __len__(self) -> int:
        return len(self.dataset) * (self.frames - 1)

    def clip_and_frame(self, j: int) -> tuple[int, int]:
        if not -len(self) <= j < len(self):
            raise IndexError(f"pair {j} is out of range for {len(self)} pairs")
        return divmod(j % len(self), self.frames - 1)

    def __getitem__(self, j: int) -> dict[str, np.ndarray]:
        clip, t = self.clip_and_frame(int(j))
        if self._cached[0] != clip:
            self._cached = (clip, self.dataset[clip])
        arrays = self._cached[1]
        pair = {"frame": np.int64(t)}
        for name, a in arrays.items():
            level = REGISTRY[name].level if name in REGISTRY else "sample"
            pair[name] = a[t:t + 2] if level == "frame" else (a[t] if level == "pair" else a)
        for name in DELTAS:
            if name in pair:
                pair[f"delta/{name}"] = pair[name][1] - pair[name][0]
        return pair

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cached"] = (None, None)
        return state


class ClipOrderSampler:
    """Pair positions with clips in a shuffled order and each clip's pairs in a row (a ``torch``
    ``Sampler`` by duck typing): every clip is read once per epoch. Call ``set_epoch(e)`` each epoch."""

    def __init__(self, pairs: FramePairs, seed: int = 0):
        self.pairs, self.seed, self.epoch = pairs, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        per_clip = self.pairs.frames - 1
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.pairs.dataset))
        for clip in order.tolist():
            yield from range(clip * per_clip, (clip + 1) * per_clip)
