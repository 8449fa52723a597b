"""The dataset on disk, the public contract: ``fields`` (every dataset, declared once),
``shards`` (HDF5 writer and validator), ``manifest``, ``dataset`` (the reader, which needs
neither dask, moderngl nor torch), ``inspection`` (``datagen inspect``), ``meshes`` (OBJ/PLY).
"""
