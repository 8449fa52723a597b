"""The geometry stage on the GL device: shape blending, the pose and vertex normals in compute shaders.

What ``geometry.build_scenes`` computes with numpy for a sample (``mean + identity @ identity_basis
+ expression @ expression_basis``, then ``R (v - pivot) + t``, then area-weighted vertex normals of
the drawn triangles), done by GL 4.3 compute shaders (shaders/blend.comp, shaders/normals.comp) for
a whole batch at once, straight into the layout the renderer draws from: per render vertex
(``MeshTopology.render_to_model``) position then normal, float32, camera space.

Only the vertices the drawn triangles use are blended. The bases are uploaded once per renderer
(component-major, so neighbouring invocations read neighbouring floats on GPUs and in llvmpipe's
SIMD lanes). Each invocation blends one vertex for every sample of the batch, reading each basis
value once per batch; a sample's sum runs over the components in the same order whatever the
batch, so its vertices are the same bits in any batch (determinism across batch sizes).

The device rounds differently from numpy (fused multiply-adds, another summation order): positions
agree within 1e-3 mm and normal components within 1e-3 (tests/test_device_geometry.py measures it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..models.morphable_model import MorphableModel
from .geometry import MeshTopology, ShapeBatch

MAX_BATCH = 16  # samples per dispatch: the blend keeps one accumulator per sample in registers
LOCAL_SIZE = 64  # invocations per work group (shaders' local_size_x)
GL_VERSION = 430  # compute shaders and storage buffers


@dataclass(frozen=True, eq=False)
class DeviceLayout:
    """The compacted mesh the shaders work on (U used vertices, F drawn triangles, R render vertices).

    used:        (U,) model-vertex ids the drawn triangles use
    triangles:   (F, 3) the drawn triangles in used-vertex ids
    render_used: (R,) used-vertex id of each render vertex
    faces_start: (U + 1,) CSR offsets into ``faces``: the triangles around each used vertex
    faces:       (sum,) triangle ids, ascending per vertex (numpy's summation order)
    """

    used: np.ndarray
    triangles: np.ndarray
    render_used: np.ndarray
    faces_start: np.ndarray
    faces: np.ndarray


@functools.lru_cache(maxsize=4)
def device_layout(topology: MeshTopology) -> DeviceLayout:
    used, inverse = np.unique(topology.triangles, return_inverse=True)
    triangles = inverse.reshape(-1, 3).astype(np.int32)
    render_used = np.searchsorted(used, topology.render_to_model).astype(np.int32)
    adjacency = topology.vertex_faces[used].tocsr()
    adjacency.sort_indices()
    return DeviceLayout(used=used, triangles=triangles, render_used=render_used,
                        faces_start=adjacency.indptr.astype(np.int32), faces=adjacency.indices.astype(np.int32))


def _source(name: str) -> str:
    text = resources.files("datagen.synth").joinpath("shaders", name).read_text()
    return text.replace("MAX_BATCH", str(MAX_BATCH)).replace("LOCAL_SIZE", str(LOCAL_SIZE))


def supports_compute(ctx) -> bool:
    return ctx.version_code >= GL_VERSION


def geometry_on_device(setting: str, ctx, host_mesh_needed: str | None) -> bool:
    """Whether a job computes its meshes on the device: ``setting`` is ``[render] geometry``;
    ``host_mesh_needed`` why the job needs them on the host (props, stored vertices...) or None.

    "auto" picks by the measured device kind (bench/throughput.py): the device on GPUs, numpy on a
    software renderer, where llvmpipe's compute shaders load storage buffers one lane at a time and
    blend slower than numpy's vector-matrix products. The choice is per device kind, not timed per
    worker, so every worker of one kind computes the same bits.
    """
    from ..errors import RenderError
    from .gpus import is_software

    if setting == "host":
        return False
    reason = host_mesh_needed
    if reason is None and not supports_compute(ctx):
        reason = f"the OpenGL context is {ctx.version_code // 100}.{ctx.version_code // 10 % 10}, compute shaders need 4.3"
    if setting == "device" and reason is not None:
        raise RenderError(f'render.geometry = "device": {reason}; use "auto" or "host"')
    return reason is None and (setting == "device" or not is_software(ctx))


class DeviceGeometry:
    """Per process: the model's bases and the mesh's adjacency in device buffers, and the compute shaders.

    ``run(shapes)`` fills ``output`` (a buffer of (B, R, 6) float32: position, normal per render
    vertex) for a batch; ``read(shapes)`` returns it as arrays (tests and the benchmark).
    """

    def __init__(self, ctx, model: MorphableModel, topology: MeshTopology):
        self.ctx, self.model = ctx, model
        self.layout = layout = device_layout(topology)
        u = len(layout.used)
        basis = np.concatenate([model.identity_basis[:, layout.used], model.expression_basis[:, layout.used]])
        self.num_components = basis.shape[0]
        with ctx:
            self.basis = ctx.buffer(np.ascontiguousarray(basis.reshape(self.num_components, u * 3), np.float32))
            self.mean = ctx.buffer(np.ascontiguousarray(model.mean[layout.used] - model.pivot, np.float32))
            self.triangles = ctx.buffer(layout.triangles)
            self.faces_start = ctx.buffer(layout.faces_start)
            self.faces = ctx.buffer(layout.faces)
            self.render_used = ctx.buffer(layout.render_used)
            self.coefficients = ctx.buffer(reserve=MAX_BATCH * self.num_components * 4, dynamic=True)
            self.poses = ctx.buffer(reserve=MAX_BATCH * 12 * 4, dynamic=True)
            self.positions = ctx.buffer(reserve=MAX_BATCH * u * 3 * 4)
            self.face_normals = ctx.buffer(reserve=MAX_BATCH * len(layout.triangles) * 3 * 4)
            self.output = ctx.buffer(reserve=MAX_BATCH * len(layout.render_used) * 6 * 4)
            self.blend = ctx.compute_shader(_source("blend.comp"))
            self.normals = ctx.compute_shader(_source("normals.comp"))
            self.blend["u_vertices"] = u
            self.blend["u_components"] = self.num_components
            self.normals["u_vertices"] = u
            self.normals["u_triangles"] = len(layout.triangles)
            self.normals["u_render_vertices"] = len(layout.render_used)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample in ``output`` (its offset is ``i * sample_bytes``)."""
        return len(self.layout.render_used) * 6 * 4

    def run(self, shapes: ShapeBatch) -> None:
        """Blend, pose and shade-normal ``shapes`` (at most MAX_BATCH) into ``output``; the context must be current."""
        b = len(shapes)
        if not 0 < b <= MAX_BATCH:
            raise ValueError(f"a device geometry batch holds 1..{MAX_BATCH} samples, got {b}")
        self.coefficients.write(np.ascontiguousarray(shapes.coefficients, np.float32))
        poses = np.concatenate([shapes.rotations.reshape(b, 9), shapes.translations], 1)
        self.poses.write(np.ascontiguousarray(poses, np.float32))
        for binding, buffer in enumerate((self.basis, self.mean, self.coefficients, self.poses, self.positions,
                                          self.triangles, self.face_normals, self.faces_start, self.faces,
                                          self.render_used, self.output)):
            buffer.bind_to_storage_buffer(binding)
        groups = lambda n: (n + LOCAL_SIZE - 1) // LOCAL_SIZE  # noqa: E731
        self.blend["u_batch"] = b
        self.blend.run(groups(3 * len(self.layout.used)))
        self.ctx.memory_barrier()
        self.normals["u_batch"] = b
        self.normals["u_stage"] = 0  # face normals
        self.normals.run(groups(len(self.layout.triangles)), b)
        self.ctx.memory_barrier()
        self.normals["u_stage"] = 1  # vertex normals, and the render vertices' layout
        self.normals.run(groups(len(self.layout.render_used)), b)
        self.ctx.memory_barrier()

    def read(self, shapes: ShapeBatch) -> tuple[np.ndarray, np.ndarray]:
        """(positions, normals), each (B, R, 3) float32 per render vertex, of ``shapes`` (any number)."""
        parts = []
        with self.ctx:
            for start in range(0, len(shapes), MAX_BATCH):
                batch = shapes[start:start + MAX_BATCH]
                self.run(batch)
                data = np.frombuffer(self.output.read(size=len(batch) * self.sample_bytes), np.float32)
                parts.append(data.reshape(len(batch), -1, 6))
        out = np.concatenate(parts)
        return out[..., :3], out[..., 3:]
