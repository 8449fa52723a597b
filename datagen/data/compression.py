"""Shard compression: the job's ``[output] compression`` as h5py dataset options.

``none``, ``lzf`` and ``gzip`` are HDF5's own; ``lz4``, ``zstd`` and ``blosc2`` (Blosc2 with byte
shuffle and LZ4, fast on images and float maps) come from hdf5plugin, a wheel that bundles the
filters. Importing this module registers them with HDF5, so every reader (``ShardedDataset``,
``inspect``, h5py after ``import hdf5plugin``) decodes them; ``bench/compression.py`` measures them.
"""

from __future__ import annotations

import hdf5plugin  # noqa: F401  (registers the lz4, zstd and blosc2 filters with HDF5)


def compression_options(name: str, level: int) -> dict:
    """h5py ``create_dataset`` keyword arguments of a compression name (``spec.jobs.COMPRESSIONS``)."""
    if name == "none":
        return {}
    if name == "lzf":
        return {"compression": "lzf"}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": level}
    if name == "lz4":
        return dict(hdf5plugin.LZ4())
    if name == "zstd":
        return dict(hdf5plugin.Zstd(clevel=max(1, level)))
    if name == "blosc2":
        return dict(hdf5plugin.Blosc2(cname="lz4", clevel=max(1, level), filters=hdf5plugin.Blosc2.SHUFFLE))
    raise ValueError(f"unknown compression {name!r}")
