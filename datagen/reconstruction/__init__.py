"""The reference reconstructor (PyTorch, the optional extra ``[train]``): train CoarseNet on the shards,
and FineNet on shards with fine ground truth, reconstruct (detailed) meshes from photos, evaluate on
synthetic and real faces.

``data`` (shards -> augmented tensors) -> ``network`` (CoarseNet, the face decoder in the graph)
-> ``training`` (losses, loop, checkpoints, logs) ; ``evaluation`` (metrics) ; ``inference``
(photo -> crop -> parameters -> mesh files and an overlay picture).
FineNet: ``fine_data`` (crops, the CoarseNet reconstruction rendered into them, depth_fine /
normal_fine) -> ``finenet`` (the U-Net, its losses) -> ``fine_training`` ; ``fine_evaluation`` ;
``fine_inference`` (the detailed mesh). ``runner.train`` runs either.
"""


def require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import DatagenError

        raise DatagenError("the reconstructor needs PyTorch: pip install 'datagen[train]'") from None
