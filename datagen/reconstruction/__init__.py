"""The reference reconstructor (PyTorch, the optional extra ``[train]``): train CoarseNet on the shards,
reconstruct meshes from photos, evaluate on synthetic and real faces.

``data`` (shards -> augmented tensors) -> ``network`` (CoarseNet, the face decoder in the graph)
-> ``training`` (losses, loop, checkpoints, logs) ; ``evaluation`` (metrics) ; ``inference``
(photo -> crop -> parameters -> mesh files and an overlay picture).
"""


def require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import DatagenError

        raise DatagenError("the reconstructor needs PyTorch: pip install 'datagen[train]'") from None
