"""Data and environments, all made offline.

MuJoCo, dm_control and OGBench pick their OpenGL backend from MUJOCO_GL when first imported, and
any module here may be the first to import them (OGBench imports both): so the backend is settled
before anything else, by probing which library this machine can load: EGL (with a device), then
OSMesa (Debian's libosmesa6). Where neither loads, MUJOCO_GL=disable lets every physics-only path
(simulation, rewards, specs) import and run; rendering then fails with `RenderingUnavailable`,
naming the package to install. A user's own MUJOCO_GL always wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

GL_LIBRARIES = {"egl": "EGL", "osmesa": "OSMesa"}  # backend -> the library PyOpenGL loads for it, in probe order
NO_GL_VALUES = ("off", "disable", "disabled", "false", "0")  # what dm_control and mujoco read as "no renderer"
PROBED_FLAG = "JEPA_GL_PROBED"  # set when MUJOCO_GL came from the probe, so child processes word errors alike
EGL_PLATFORM_DEVICE_EXT = 0x313F


class RenderingUnavailable(RuntimeError):
    """Rendering was asked for on a machine (or a MUJOCO_GL setting) without an OpenGL backend."""


def _load(name: str) -> ctypes.CDLL | None:
    path = ctypes.util.find_library(name)
    try:
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None


def _egl_has_device(lib: ctypes.CDLL) -> bool:
    """libEGL alone (glvnd without a vendor) cannot render: dm_control needs a device to open headless."""
    get_proc = lib.eglGetProcAddress
    get_proc.restype, get_proc.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    address = get_proc(b"eglQueryDevicesEXT")
    if not address:
        return False
    query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))(address)
    count = ctypes.c_int(0)
    return bool(query(0, None, ctypes.byref(count))) and count.value > 0


def probe_gl_backend() -> str | None:
    """The first backend whose library loads here ("egl" only with a device), or None."""
    for backend, name in GL_LIBRARIES.items():
        lib = _load(name)
        if lib is not None and (backend != "egl" or _egl_has_device(lib)):
            return backend
    return None


def default_gl_backend() -> str:
    """What MUJOCO_GL should be when the user has not set it: the probed backend, else "disable"."""
    return probe_gl_backend() or NO_GL_VALUES[1]


def settle_gl_backend() -> str:
    """Set MUJOCO_GL (unless the user did) before dm_control or mujoco is imported; return it."""
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = default_gl_backend()
        os.environ[PROBED_FLAG] = "1"
    return os.environ["MUJOCO_GL"]


def require_rendering(what: str) -> None:
    """Fail in one line, naming the fix, before `what` tries to render without a GL backend."""
    backend = settle_gl_backend()
    if backend.strip().lower() not in NO_GL_VALUES:
        return
    if os.environ.get(PROBED_FLAG):
        reason = f"none of {', '.join(n for n in GL_LIBRARIES.values())} could be loaded"
        fix = "apt-get install libosmesa6 (CPU) or libegl1 (GPU), or set MUJOCO_GL=egl|osmesa"
    else:
        reason = f"MUJOCO_GL={backend} turns rendering off"
        fix = "unset MUJOCO_GL (the backend is then probed) or set MUJOCO_GL=egl|osmesa"
    raise RenderingUnavailable(f"{what} needs an OpenGL library ({reason}). Fix: {fix}")


settle_gl_backend()


# Rendering of dm_control bodies without shadows and floor reflections: software rendering (OSMesa) is
# several times faster without them, and at 32-64 pixels they add little.
RENDER_FLAGS = {"shadow": False, "reflection": False}


def dm_control_suite():
    """dm_control's suite, imported only once MUJOCO_GL is settled (it picks its backend at first import)."""
    settle_gl_backend()
    from dm_control import suite

    return suite


def rendering_problem() -> str | None:
    """Why rendering cannot work in this process (the error's text), or None: for skipping rendering tests."""
    try:
        require_rendering("rendering")
    except RenderingUnavailable as err:
        return str(err)
    return None
