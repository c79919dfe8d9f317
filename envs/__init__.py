"""Data and environments, all made offline.

MuJoCo, dm_control and OGBench pick their OpenGL backend from MUJOCO_GL when first imported, and
any module here may be the first to import them (OGBench imports both): so the default is set
before anything else, EGL on a GPU and OSMesa (Debian's libosmesa6) on a CPU. A user's own
MUJOCO_GL always wins.
"""
import os


def default_gl_backend() -> str:
    import torch

    return "egl" if torch.cuda.is_available() else "osmesa"


os.environ.setdefault("MUJOCO_GL", default_gl_backend())
