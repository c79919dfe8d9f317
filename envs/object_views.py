"""Object views (seq-JEPA, issue 16): a 3DIEBench-like set rendered offline with MuJoCo.

Each sample is one object of a known class, built from MuJoCo primitives (composed shapes: table, mug, ...),
in a random colour (a nuisance), seen under `views` random orientations: Euler angles drawn uniformly in
±`max_angle` degrees about x, y, z, as 3DIEBench draws them. Every view's orientation is stored (quaternion
w,x,y,z in MuJoCo's order, and the Euler angles), so the relative rotation between any two views is known
and `render_view` re-renders any view from the stored numbers. Parts of an object are shaded differently so
its orientation is readable at 32 px. Deterministic per seed (per GL backend); cached by ``envs.cache``.
Headless rendering follows ``envs.require_rendering`` (EGL, or OSMesa; a clear error when neither loads).
The orchestrator entry (orchestrator/object_views_data.py) spreads the rendering over Ray tasks.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs import require_rendering, settle_gl_backend
from envs.cache import (
    clip_rng,
    config_fingerprint,
    dataset_dir,
    load_npz_split,
)

GENERATOR_VERSION = 1
RENDERING = "rendering object views (data=object_views)"
MAKE_HINT = "jepa data make object_views"
SUPERSAMPLING = 2  # rendered this many times larger and box-filtered down: cheap antialiasing
PART_SHADES = (1.0, 0.62, 0.8, 0.45, 0.9)  # per part: orientation stays readable on a one-colour object

# Parts as (geom type, size, position, euler xyz in degrees). Shapes are asymmetric on purpose: a rotation
# that maps an object onto itself could not be recovered from its views.
SHAPES: dict[str, tuple[tuple[str, tuple, tuple, tuple], ...]] = {
    "table": (("box", (.26, .16, .03), (0, 0, .12), (0, 0, 0)), ("cylinder", (.025, .12), (.21, .11, -.02), (0, 0, 0)),
              ("cylinder", (.025, .12), (-.21, .11, -.02), (0, 0, 0)), ("box", (.2, .025, .1), (0, -.13, -.02), (0, 0, 0))),
    "mug": (("cylinder", (.14, .18), (0, 0, 0), (0, 0, 0)), ("box", (.04, .025, .1), (.18, 0, 0), (0, 0, 0)),
            ("cylinder", (.15, .02), (0, 0, .18), (0, 0, 0))),
    "dumbbell": (("capsule", (.035, .22), (0, 0, 0), (0, 90, 0)), ("sphere", (.13,), (.26, 0, 0), (0, 0, 0)),
                 ("box", (.07, .07, .07), (-.26, 0, 0), (0, 0, 0))),
    "ell": (("box", (.28, .07, .07), (0, 0, 0), (0, 0, 0)), ("box", (.07, .07, .2), (.21, 0, .27), (0, 0, 0)),
            ("box", (.05, .12, .05), (-.23, .12, 0), (0, 0, 0))),
    "tee": (("box", (.3, .06, .06), (0, 0, .2), (0, 0, 0)), ("box", (.06, .06, .22), (0, 0, -.08), (0, 0, 0)),
            ("sphere", (.08,), (0, 0, -.3), (0, 0, 0))),
    "mushroom": (("cylinder", (.06, .16), (0, 0, -.1), (0, 0, 0)), ("ellipsoid", (.26, .18, .09), (0, 0, .12), (0, 0, 0)),
                 ("box", (.05, .05, .05), (.12, 0, -.22), (0, 0, 0))),
    "plane": (("capsule", (.05, .3), (0, 0, 0), (0, 90, 0)), ("box", (.07, .32, .015), (.05, 0, 0), (0, 0, 0)),
              ("box", (.04, .1, .012), (-.28, 0, .02), (0, 0, 0)), ("box", (.05, .012, .08), (-.3, 0, .08), (0, 0, 0))),
    "chair": (("box", (.17, .17, .03), (0, 0, 0), (0, 0, 0)), ("box", (.17, .03, .2), (0, .15, .2), (0, 0, 0)),
              ("cylinder", (.02, .13), (.14, -.14, -.14), (0, 0, 0)), ("cylinder", (.02, .13), (-.14, -.14, -.14), (0, 0, 0))),
    "box": (("box", (.1, .18, .28), (0, 0, 0), (0, 0, 0)),),
    "ellipsoid": (("ellipsoid", (.12, .2, .3), (0, 0, 0), (0, 0, 0)),),
    "capsule": (("capsule", (.1, .22), (0, 0, 0), (30, 0, 0)),),
    "cone": (("cylinder", (.2, .05), (0, 0, -.15), (0, 0, 0)), ("cylinder", (.12, .07), (0, 0, -.03), (0, 0, 0)),
             ("cylinder", (.05, .08), (0, 0, .12), (0, 0, 0))),
}
OBJECT_SETS: dict[str, tuple[str, ...]] = {
    "composed": ("table", "mug", "dumbbell", "ell", "tee", "mushroom", "plane", "chair"),
    "primitives": ("box", "ellipsoid", "capsule", "cone"),
}
OBJECT_SETS["all"] = OBJECT_SETS["composed"] + OBJECT_SETS["primitives"]


@dataclass
class ObjectViewsConfig:
    """Everything that determines the object-views dataset, bit for bit (per GL backend)."""

    object_set: str = "composed"  # one of OBJECT_SETS
    num_train: int = 1024  # objects (each a sequence of `views` views)
    num_val: int = 256
    views: int = 8  # views rendered per object
    size: int = 32
    max_angle: float = 90.0  # Euler angles drawn uniformly in ±max_angle degrees (3DIEBench: 90)
    seed: int = 0

    def fingerprint(self) -> str:
        return config_fingerprint(self, GENERATOR_VERSION)


def problems(cfg) -> list[tuple[str, bool, str]]:
    """(key, ok, what is wrong and the fix) for every constraint on a config."""
    return [
        ("object_set", cfg.object_set in OBJECT_SETS,
         f"is {cfg.object_set!r}, not a known object set. Fix: use one of {', '.join(OBJECT_SETS)}"),
        ("num_train", cfg.num_train >= 1 and cfg.num_val >= 1, (f"({cfg.num_train}) and data.num_val ({cfg.num_val}) must "
                                                                "be >= 1. Fix: set both to at least 1")),
        ("views", cfg.views >= 2, (f"is {cfg.views}: a sequence needs at least one context view and one to predict. "
                                    "Fix: set data.views >= 2 (3DIEBench-like: 8)")),
        ("size", cfg.size >= 8, f"is {cfg.size}. Fix: use at least 8 pixels"),
        ("max_angle", 0.0 < cfg.max_angle <= 180.0, f"is {cfg.max_angle}. Fix: use degrees in (0, 180]"),
        ("seed", cfg.seed >= 0, f"is {cfg.seed}. Fix: use a seed >= 0"),
    ]


def check(cfg) -> None:
    """Raise ValueError naming the first bad key (`data.<key> ... Fix: ...`)."""
    for key, ok, message in problems(cfg):
        if not ok:
            raise ValueError(f"data.{key} {message}")


# --- scene description ------------------------------------------------------------------------
def _quat_of_euler(degrees) -> np.ndarray:
    """Extrinsic x-y-z Euler angles (degrees) as a MuJoCo quaternion (w, x, y, z)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_euler("xyz", degrees, degrees=True).as_quat()
    return np.array([w, x, y, z])


def object_xml(shape: str, size: int) -> str:
    """An MJCF scene: one free body holding the shape's parts (grey; `render_view` colours them), a fixed
    camera looking at the origin, a key light and a fill light."""
    geoms = []
    for k, (kind, dims, pos, euler) in enumerate(SHAPES[shape]):
        quat = " ".join(f"{v:.6f}" for v in _quat_of_euler(euler))
        geoms.append(f'<geom name="part{k}" type="{kind}" size="{" ".join(map(str, dims))}" pos="{" ".join(map(str, pos))}" '
                     f'quat="{quat}" rgba="1 1 1 1"/>')
    side = size * SUPERSAMPLING
    return f"""<mujoco><visual><global offwidth="{side}" offheight="{side}"/><quality shadowsize="0"/></visual>
<worldbody><light pos="0.6 -1.2 1.4" dir="-0.4 1 -1" diffuse="0.8 0.8 0.8"/>
<light pos="-1 -0.5 0.2" dir="1 0.5 -0.2" diffuse="0.3 0.3 0.3" directional="true"/>
<camera name="view" pos="0 -1.25 0" xyaxes="1 0 0 0 0 1" fovy="40"/>
<body name="object"><freejoint/>{"".join(geoms)}</body></worldbody></mujoco>"""


class Renderers:
    """One MuJoCo model, data and renderer per (shape, size), made on first use and freed by `close`:
    a GL context is far dearer than a frame."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, int], tuple] = {}

    def __call__(self, shape: str, size: int):
        if (shape, size) not in self._made:
            require_rendering(RENDERING)
            import mujoco

            model = mujoco.MjModel.from_xml_string(object_xml(shape, size))
            self._made[(shape, size)] = (model, mujoco.MjData(model), mujoco.Renderer(model, size * SUPERSAMPLING, size * SUPERSAMPLING))
        return self._made[(shape, size)]

    def close(self) -> None:
        for _, _, renderer in self._made.values():
            renderer.close()
        self._made.clear()


def render_view(renderers: Renderers, shape: str, colour: np.ndarray, quat: np.ndarray, size: int) -> np.ndarray:
    """`shape` in `colour` (RGB in [0, 1]) at orientation `quat` (w, x, y, z) as uint8 [size, size, 3]."""
    import mujoco

    model, data, renderer = renderers(shape, size)
    for k in range(model.ngeom):
        model.geom_rgba[k, :3] = np.asarray(colour) * PART_SHADES[k % len(PART_SHADES)]
    data.qpos[:3] = 0.0
    data.qpos[3:7] = quat
    mujoco.mj_forward(model, data)
    renderer.update_scene(data, camera="view")
    image = renderer.render().astype(np.float64)
    pooled = image.reshape(size, SUPERSAMPLING, size, SUPERSAMPLING, 3).mean(axis=(1, 3))
    return np.rint(pooled).astype(np.uint8)


def draw_object(rng: np.random.Generator, cfg: ObjectViewsConfig) -> dict[str, np.ndarray]:
    """One object's class, colour and per-view orientations (no rendering): everything a view depends on."""
    shapes = OBJECT_SETS[cfg.object_set]
    label = int(rng.integers(len(shapes)))
    colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.75, 1.0)))
    euler = rng.uniform(-cfg.max_angle, cfg.max_angle, size=(cfg.views, 3))
    quat = np.stack([_quat_of_euler(e) for e in euler])
    return {"label": np.int64(label), "colour": colour.astype(np.float32), "euler": euler.astype(np.float32),
            "quat": quat.astype(np.float32)}


def make_chunk(cfg: ObjectViewsConfig, split: str, start: int, count: int) -> dict[str, np.ndarray]:
    """Objects start..start+count-1 of a split, each from its own stream, rendered in this process."""
    settle_gl_backend()
    renderers = Renderers()
    drawn = [draw_object(clip_rng(cfg.seed, split, i), cfg) for i in range(start, start + count)]
    shapes = OBJECT_SETS[cfg.object_set]
    try:
        for d in drawn:
            d["views"] = np.stack([render_view(renderers, shapes[int(d["label"])], d["colour"], q, cfg.size) for q in d["quat"]])
    finally:
        renderers.close()
    return {k: np.stack([d[k] for d in drawn]) for k in ("views", "label", "colour", "euler", "quat")}


# --- cache ----------------------------------------------------------------------------------------
def views_dir(cfg: ObjectViewsConfig, root: Path | None = None) -> Path:
    return dataset_dir("object_views", cfg.fingerprint(), root)


def load_object_views(path: Path, split: str) -> dict[str, np.ndarray]:
    """One split as arrays; a missing or truncated copy names the command that makes it."""
    return load_npz_split(path, split, "object_views", MAKE_HINT, "views")
