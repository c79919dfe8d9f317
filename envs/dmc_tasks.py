"""dm_control domains for zero-shot RL: their tasks' rewards as functions of a physics state.

ExoRL stores the MuJoCo state of every step and recomputes rewards for any task afterwards
(``relabel``); the evaluation envs (``envs.dmc_gym``) score with the same functions, and use the
same observation flattening and action scaling as the collected data.

Stand-ins for tasks dm_control lacks (all in [0, 1], shaped like dm_control's):

* walker spin: the torso's angular speed, 0 at rest rising linearly to 1 at
  ``WALKER_SPIN_SPEED`` rad/s and above, in either direction.
* cheetah walk / walk_backward / run_backward: dm_control's run reward with the
  target speed (2 or 10 m/s) and the sign of the speed changed, as URLB does.
* quadruped stand / jump: uprightness (dm_control's) times a torso-height term:
  at least ``QUADRUPED_STAND_HEIGHT`` (smooth margin) or, for jump, 0 at standing
  height rising linearly to 1 at ``QUADRUPED_JUMP_HEIGHT``.
* point-mass maze: dm_control has no maze, so the plain ``point_mass`` arena
  (walls at +-0.3 m, no inner walls) stands in for URLB's maze, with reach tasks
  rewarding distance to goals ``POINT_MASS_GOAL_OFFSET`` from the centre towards
  each corner ("top" is +y, the top of camera 0's image). Real ExoRL
  point_mass_maze data therefore cannot be relabelled with these tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cache, partial
from typing import NamedTuple

import numpy as np
from dm_control.utils import rewards

from envs import RENDER_FLAGS, dm_control_suite

PIXELS_SIZE = 64
PIXELS_CAMERA = 0

# --------------------------------------------------------------------------
# Domains and task rewards
# --------------------------------------------------------------------------


class Domain(NamedTuple):
    """A dm_control domain, the task simulated to collect data, and the evaluation tasks."""

    suite_domain: str
    base_task: str
    tasks: tuple[str, ...]


DOMAINS = {
    "walker": Domain("walker", "walk", ("stand", "walk", "run", "spin")),
    "cheetah": Domain("cheetah", "run", ("walk", "walk_backward", "run", "run_backward")),
    # "run" rather than "walk": same start states, but a 100 m floor the body never walks off.
    "quadruped": Domain("quadruped", "run", ("stand", "walk", "run", "jump")),
    "point_mass": Domain(
        "point_mass",
        "easy",
        ("reach_top_left", "reach_top_right", "reach_bottom_left", "reach_bottom_right"),
    ),
}

WALKER_SPIN_SPEED = 5.0  # rad/s
CHEETAH_WALK_SPEED = 2.0  # m/s, URLB's
CHEETAH_RUN_SPEED = 10.0  # m/s, dm_control's
# Torso height (m) with the legs at their neutral (zero-action) pose.
QUADRUPED_STAND_HEIGHT = 0.45
QUADRUPED_JUMP_HEIGHT = 0.8
POINT_MASS_GOAL_OFFSET = 0.2  # m along x and y; the mass can reach +-0.29
POINT_MASS_GOAL_RADIUS = 0.03  # full reward inside
POINT_MASS_GOAL_MARGIN = 0.1  # reward 0.1 this far outside the radius

RewardFn = Callable[[object], float]


def _at_least(value: float, target: float) -> float:
    """1 at or above ``target``, falling linearly to 0 at 0: dm_control's speed-reward shape."""
    return float(
        rewards.tolerance(
            value, bounds=(target, math.inf), margin=target, value_at_margin=0, sigmoid="linear"
        )
    )


def _walker_spin(physics) -> float:
    angular_velocity = physics.named.data.cvel["torso"][:3]  # world frame, rad/s
    return _at_least(float(np.linalg.norm(angular_velocity)), WALKER_SPIN_SPEED)


def _cheetah_speed(physics, direction: float, target: float) -> float:
    return _at_least(direction * float(physics.speed()), target)


def _quadruped_upright(physics) -> float:
    """0 upside down, 1 upright: dm_control's quadruped upright term."""
    return (1.0 + float(physics.torso_upright())) / 2.0


def _quadruped_height(physics) -> float:
    return float(physics.named.data.xpos["torso", "z"])


def _quadruped_stand(physics) -> float:
    height = rewards.tolerance(
        _quadruped_height(physics),
        bounds=(QUADRUPED_STAND_HEIGHT, math.inf),
        margin=QUADRUPED_STAND_HEIGHT / 2,
    )
    return _quadruped_upright(physics) * float(height)


def _quadruped_jump(physics) -> float:
    rise = _quadruped_height(physics) - QUADRUPED_STAND_HEIGHT
    return _quadruped_upright(physics) * _at_least(
        rise, QUADRUPED_JUMP_HEIGHT - QUADRUPED_STAND_HEIGHT
    )


def _point_mass_reach(physics, goal: tuple[float, float]) -> float:
    distance = np.linalg.norm(physics.named.data.geom_xpos["pointmass", :2] - np.asarray(goal))
    near = rewards.tolerance(
        distance, bounds=(0.0, POINT_MASS_GOAL_RADIUS), margin=POINT_MASS_GOAL_MARGIN
    )
    return float(near)


@cache
def _suite_task(suite_domain: str, task: str):
    """dm_control's own task object; its ``get_reward`` reads only the physics it is given."""
    return dm_control_suite().load(suite_domain, task).task


def _from_suite(suite_domain: str, task: str) -> Callable[[], RewardFn]:
    def make() -> RewardFn:
        reward = _suite_task(suite_domain, task).get_reward
        return lambda physics: float(reward(physics))

    return make


def _custom(reward: RewardFn) -> Callable[[], RewardFn]:
    return lambda: reward


def _point_mass_goal(x_sign: float, y_sign: float) -> Callable[[], RewardFn]:
    goal = (x_sign * POINT_MASS_GOAL_OFFSET, y_sign * POINT_MASS_GOAL_OFFSET)
    return _custom(partial(_point_mass_reach, goal=goal))


# domain -> task -> maker of the reward function (makers defer loading dm_control).
TASKS: dict[str, dict[str, Callable[[], RewardFn]]] = {
    "walker": {
        "stand": _from_suite("walker", "stand"),
        "walk": _from_suite("walker", "walk"),
        "run": _from_suite("walker", "run"),
        "spin": _custom(_walker_spin),
    },
    "cheetah": {
        "walk": _custom(partial(_cheetah_speed, direction=1.0, target=CHEETAH_WALK_SPEED)),
        "walk_backward": _custom(
            partial(_cheetah_speed, direction=-1.0, target=CHEETAH_WALK_SPEED)
        ),
        "run": _from_suite("cheetah", "run"),
        "run_backward": _custom(partial(_cheetah_speed, direction=-1.0, target=CHEETAH_RUN_SPEED)),
    },
    "quadruped": {
        "stand": _custom(_quadruped_stand),
        "walk": _from_suite("quadruped", "walk"),
        "run": _from_suite("quadruped", "run"),
        "jump": _custom(_quadruped_jump),
    },
    "point_mass": {
        "reach_top_left": _point_mass_goal(-1.0, 1.0),
        "reach_top_right": _point_mass_goal(1.0, 1.0),
        "reach_bottom_left": _point_mass_goal(-1.0, -1.0),
        "reach_bottom_right": _point_mass_goal(1.0, -1.0),
    },
}
assert all(set(TASKS[name]) == set(spec.tasks) for name, spec in DOMAINS.items())


def check_domain(domain: str) -> Domain:
    """The domain's spec, or a ValueError naming the known domains."""
    if domain not in DOMAINS:
        raise ValueError(f"Unknown ExoRL domain {domain!r}; known: {sorted(DOMAINS)}")
    return DOMAINS[domain]


def task_reward(domain: str, task: str) -> RewardFn:
    """Reward of ``task`` as a function of a physics of ``domain`` (after ``set_state``).

    None of these rewards reads the control signal, which the stored state lacks.
    """
    check_domain(domain)
    if task not in TASKS[domain]:
        raise ValueError(
            f"Unknown task {task!r} for domain {domain!r}; known: {sorted(TASKS[domain])}"
        )
    return TASKS[domain][task]()


# --------------------------------------------------------------------------
# Environments, observations, pixels
# --------------------------------------------------------------------------


def load_environment(domain: str):
    """The base task of ``domain`` with no time limit: episodes end when we stop stepping."""
    spec = check_domain(domain)
    task_kwargs = {"time_limit": math.inf}
    return dm_control_suite().load(spec.suite_domain, spec.base_task, task_kwargs=task_kwargs)


def flatten_observation(observation: Mapping[str, np.ndarray]) -> np.ndarray:
    """One float32 vector, entries in the order the task lists them.

    dm_control tasks build their observation as an OrderedDict in a fixed order
    (walker: orientations, height, velocity); dm_control's own flattening
    (``flat_observation=True``) keeps that order, and so do we. The keys and
    sizes are recorded in meta.json.
    """
    return np.concatenate(
        [np.asarray(value, dtype=np.float32).ravel() for value in observation.values()]
    )


def render_pixels(physics) -> np.ndarray:
    """Camera 0 at 64x64 as uint8 [64, 64, 3]; use it for evaluation frames too, so they match.

    Shadows and reflections are off: software rendering is several times faster
    without them and they add little at 64 pixels.
    """
    return physics.render(
        PIXELS_SIZE, PIXELS_SIZE, camera_id=PIXELS_CAMERA, render_flag_overrides=RENDER_FLAGS
    )


def scale_to_spec(action: np.ndarray, action_spec) -> np.ndarray:
    """Map [-1, 1] linearly onto the domain's bounds (quadruped's are not symmetric).

    Episodes store the [-1, 1] action, as ExoRL does behind its action-scaling wrapper.
    """
    low, high = action_spec.minimum, action_spec.maximum
    return low + (np.asarray(action, np.float64) + 1.0) * (high - low) / 2.0


# --------------------------------------------------------------------------
# Relabelling
# --------------------------------------------------------------------------


@cache
def _relabel_physics(domain: str):
    return load_environment(domain).physics


def relabel(episode: Mapping[str, np.ndarray], domain: str, task: str) -> np.ndarray:
    """float32 [len+1, 1] rewards of ``task`` at each stored physics state, as ExoRL does.

    Row i is the reward for arriving in state i; row 0 (the reset state) is
    computed too, but the dummy first step carries no transition.
    """
    reward = task_reward(domain, task)
    physics = _relabel_physics(domain)
    states = np.asarray(episode["physics"], dtype=np.float64)
    values = np.empty((len(states), 1), np.float32)
    for row, state in enumerate(states):
        with physics.reset_context():
            physics.set_state(state)
        values[row, 0] = reward(physics)
    return values
