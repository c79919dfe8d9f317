"""Make this Python process behave as on a machine without any OpenGL library.

Put this directory on PYTHONPATH (every child process, Ray workers included, inherits it):
ctypes then refuses to find or load libOSMesa, libEGL and libGL (libGLX, libGLU, ... too),
which is how PyOpenGL, mujoco and dm_control reach them.
"""
import ctypes
import ctypes.util
import os
import re

_FILE = re.compile(r"lib(OSMesa|EGL|GL)[^/]*$")
_NAME = re.compile(r"^(OSMesa|EGL|GL)")
_init = ctypes.CDLL.__init__
_find_library = ctypes.util.find_library


def _refused(name) -> bool:
    return isinstance(name, str) and bool(_FILE.search(name) or _NAME.match(os.path.basename(name)))


def _cdll_init(self, name, *args, **kwargs):
    if _refused(name):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory (tests/nogl)")
    _init(self, name, *args, **kwargs)


def _find(name):
    return None if _refused(name) else _find_library(name)


ctypes.CDLL.__init__ = _cdll_init
ctypes.util.find_library = _find
