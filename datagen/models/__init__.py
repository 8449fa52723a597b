"""Morphable models: ``morphable_model`` (the in-memory model and its on-disk format),
``model_import`` (ICT-FaceKit, the SFM), ``registry`` (finding, downloading and installing them).

``from datagen.models import resolve_model`` (and the registry's other functions) works without
importing the registry until one is used.
"""

import importlib

_REGISTRY_NAMES = ("KNOWN_MODELS", "default_model_dir", "fetch_model", "install_model", "resolve_model")


def __getattr__(name):
    if name in _REGISTRY_NAMES:
        return getattr(importlib.import_module("datagen.models.registry"), name)
    raise AttributeError(f"module 'datagen.models' has no attribute {name!r}")


__all__ = list(_REGISTRY_NAMES)
