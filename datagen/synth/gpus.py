"""Which EGL device a process renders on: one GPU per worker process, llvmpipe without GPUs.

EGL enumerates devices on its own (``eglQueryDevicesEXT``): ``CUDA_VISIBLE_DEVICES`` does not
reorder or hide them, and on a multi-GPU node EGL device 0 need not be CUDA device 0. NVIDIA's
driver tells which CUDA device an EGL device is (``EGL_NV_device_cuda``); Mesa lists its CPU
renderer as one more device (``EGL_MESA_device_software``).

A process binds once (``egl_device()``):

1. ``$DATAGEN_EGL_DEVICE`` if set: that EGL device, no questions asked;
2. otherwise the GPUs this process may use (all hardware EGL devices, narrowed by an integer
   ``CUDA_VISIBLE_DEVICES``), and of those the first that no other process on this node holds:
   each GPU has a lock file under the node's temporary folder, held with ``flock`` for the
   life of the process, so N workers on a node with N GPUs take one each, whoever started them
   (a LocalCluster, a SLURM job's ``--nworkers``, a hand-started ``dask worker``), and a
   restarted worker takes the GPU its dead predecessor left;
3. no GPU: the software renderer (Mesa llvmpipe).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import functools
import getpass
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

EGL_EXTENSIONS = 0x3055
EGL_CUDA_DEVICE_NV = 0x323A
MAX_DEVICES = 32


@dataclass(frozen=True)
class EglDevice:
    index: int  # position in eglQueryDevicesEXT's list: moderngl's device_index
    software: bool  # Mesa's CPU renderer (llvmpipe)
    cuda_ordinal: int | None = None  # the CUDA device it is, where the driver says (NVIDIA)


@dataclass(frozen=True)
class Binding:
    device: int  # the EGL device index to create the context on
    gpu: bool  # a hardware device (False: llvmpipe)
    shared: bool = False  # more workers on this node than GPUs: this GPU is shared
    how: str = ""  # one line: how the device was chosen


def egl_devices() -> list[EglDevice]:
    """Every EGL device, in EGL's order; [] when libEGL or the device extension is missing."""
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    try:
        egl = ctypes.CDLL(name)
    except OSError:
        return []
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    egl.eglQueryString.restype = ctypes.c_char_p
    egl.eglQueryString.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def proc(symbol, restype, *argtypes):
        address = egl.eglGetProcAddress(symbol)
        return ctypes.CFUNCTYPE(restype, *argtypes)(address) if address else None

    query_devices = proc(b"eglQueryDevicesEXT", ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                         ctypes.POINTER(ctypes.c_int))
    query_string = proc(b"eglQueryDeviceStringEXT", ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int)
    query_attrib = proc(b"eglQueryDeviceAttribEXT", ctypes.c_uint, ctypes.c_void_p, ctypes.c_int,
                        ctypes.POINTER(ctypes.c_ssize_t))
    if query_devices is None or query_string is None:
        return []
    handles = (ctypes.c_void_p * MAX_DEVICES)()
    count = ctypes.c_int(0)
    if not query_devices(MAX_DEVICES, handles, ctypes.byref(count)):
        return []
    devices = []
    for i in range(count.value):
        extensions = (query_string(handles[i], EGL_EXTENSIONS) or b"").decode(errors="replace").split()
        ordinal = None
        if "EGL_NV_device_cuda" in extensions and query_attrib is not None:
            value = ctypes.c_ssize_t(-1)
            if query_attrib(handles[i], EGL_CUDA_DEVICE_NV, ctypes.byref(value)) and value.value >= 0:
                ordinal = int(value.value)
        devices.append(EglDevice(i, "EGL_MESA_device_software" in extensions, ordinal))
    return devices


def usable_gpus(devices: list[EglDevice], cuda_visible: str | None) -> list[EglDevice]:
    """The hardware EGL devices this process may render on, in ``CUDA_VISIBLE_DEVICES`` order.

    An empty ``CUDA_VISIBLE_DEVICES`` (or -1) means no GPU. Integer entries are physical CUDA
    ordinals: where EGL sees more GPUs than are listed, the devices are matched by the CUDA
    ordinal the driver reports; where EGL sees exactly as many (a batch system's cgroup already
    hid the others), all are used. UUID or MIG entries cannot be matched: all hardware devices
    are used and ``$DATAGEN_EGL_DEVICE`` is the way to pin one.
    """
    hardware = [d for d in devices if not d.software]
    if cuda_visible is None:
        return hardware
    entries = [e.strip() for e in cuda_visible.split(",") if e.strip()]
    if not entries or entries[0] in ("-1", "NoDevFiles"):
        return []
    if len(hardware) <= len(entries) or not all(e.isdigit() for e in entries):
        return hardware
    by_ordinal = {d.cuda_ordinal: d for d in hardware if d.cuda_ordinal is not None}
    if len(by_ordinal) != len(hardware):
        return hardware[:len(entries)]
    return [by_ordinal[int(e)] for e in entries if int(e) in by_ordinal]


def lock_folder() -> Path:
    """Node-local, one per user: where workers on this node claim GPUs."""
    return Path(tempfile.gettempdir()) / f"datagen-gpu-locks-{getpass.getuser()}"


_held_locks: list = []  # open lock files: the claim lasts as long as the process


def claim_gpu(gpus: list[EglDevice], folder: Path | None = None) -> tuple[EglDevice, bool]:
    """The first of ``gpus`` no other process on this node holds, and whether it is shared.

    With every GPU taken (more workers than GPUs), GPUs are shared round-robin by process id.
    """
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        handle = open(folder / f"egl-device-{gpu.index}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _held_locks.append(handle)
        return gpu, False
    return gpus[os.getpid() % len(gpus)], True


@functools.lru_cache(maxsize=1)
def egl_device() -> Binding:
    """This process's EGL device, chosen once (see the module's docstring)."""
    explicit = os.environ.get("DATAGEN_EGL_DEVICE", "").strip()
    if explicit:
        if not explicit.isdigit():
            from ..errors import RenderError

            raise RenderError(f"DATAGEN_EGL_DEVICE must be an EGL device index (0, 1, ...), got '{explicit}'")
        return Binding(int(explicit), gpu=True, how=f"EGL device {explicit} from $DATAGEN_EGL_DEVICE")
    devices = egl_devices()
    gpus = usable_gpus(devices, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if gpus:
        gpu, shared = claim_gpu(gpus)
        cuda = f" (CUDA device {gpu.cuda_ordinal})" if gpu.cuda_ordinal is not None else ""
        note = f", shared: more workers than the {len(gpus)} GPUs" if shared else ""
        return Binding(gpu.index, gpu=True, shared=shared, how=f"GPU: EGL device {gpu.index}{cuda}{note}")
    software = next((d.index for d in devices if d.software), 0)
    return Binding(software, gpu=False, how="no GPU: Mesa's software renderer (llvmpipe)")


def gpu_count() -> int:
    """GPUs this process could bind to (the default local worker count when > 0)."""
    if os.environ.get("DATAGEN_EGL_DEVICE", "").strip():
        return 1
    return len(usable_gpus(egl_devices(), os.environ.get("CUDA_VISIBLE_DEVICES")))


# Packages that bring their own LLVM and crash the process (SIGSEGV) when first loaded after Mesa's
# llvmpipe has loaded its own: triton (installed with CUDA builds of PyTorch; torch imports it
# lazily, e.g. when an optimiser is created). Loaded before, they coexist.
LLVM_USERS = ("triton",)


def load_llvm_users_first() -> None:
    """Import the installed ``LLVM_USERS`` before any GL context exists (a no-op once imported)."""
    import importlib
    import importlib.util

    for name in LLVM_USERS:
        if name in sys.modules:
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except Exception:  # a broken install of an optional package: it cannot be imported later either
            pass


def create_context(device_index: int | None = None):
    """A headless EGL context: the only place datagen makes one.

    ``device_index`` (default: this process's binding, see ``gpus.egl_device``: ``$DATAGEN_EGL_DEVICE``,
    else a GPU no other worker on this node holds, else llvmpipe) picks the EGL device.
    """
    import moderngl

    load_llvm_users_first()
    if device_index is None:
        device_index = egl_device().device
    try:
        return moderngl.create_context(standalone=True, backend="egl", require=330, device_index=device_index)
    except Exception as e:  # moderngl raises plain Exceptions for every EGL failure
        from ..errors import RenderError

        raise RenderError(
            f"cannot create a headless OpenGL (EGL) context on device {device_index}: {e}. "
            "Install an EGL driver: on NVIDIA nodes the driver's libEGL_nvidia; elsewhere Mesa "
            "(Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri)") from None


def describe_context(ctx) -> str:
    with ctx:
        return f"{ctx.info['GL_RENDERER']} ({ctx.info['GL_VERSION']})"


def is_software(ctx) -> bool:
    with ctx:
        renderer = ctx.info["GL_RENDERER"].lower()
    return any(name in renderer for name in ("llvmpipe", "softpipe", "swrast", "lavapipe"))
