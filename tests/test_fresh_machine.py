"""A fresh machine: no OpenGL library, a dead Ray head left behind, an unreachable Ray address.

"No OpenGL" is simulated for every Python process (Ray's workers included) by tests/nogl/sitecustomize.py
on PYTHONPATH: ctypes then refuses libOSMesa, libEGL and libGL, as on a Debian machine without them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from envs import PROBED_FLAG, RenderingUnavailable, require_rendering
from orchestrator.ray_connect import RayAddressError, check_reachable, resolve_address
from tests.conftest import free_port, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
NOGL = REPO / "tests" / "nogl"
# Runs a CLI command in-process, then says whether RLlib was imported along the way.
CLI = "import sys; from orchestrator.cli import main; rc = main(sys.argv[1:]); " \
      "print('RLLIB_IMPORTED', any(m.startswith('ray.rllib') for m in sys.modules)); sys.exit(rc)"
NOISE = ("GLFWError", "DISPLAY environment variable", "Token authentication is enabled")


def cli_env(data: Path, **extra: str) -> dict[str, str]:
    """This venv, a private data cache, wide lines, no Ray address, and a GL backend the child probes itself."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "MUJOCO_GL", PROBED_FLAG, "PYOPENGL_PLATFORM", "PYTHONPATH")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", JEPA_DATA=str(data), COLUMNS="1000")
    env.update(extra)
    return env


def jepa(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def tiny_run(storage: Path, data: Path) -> list[str]:
    return ["run", "variant=vjepa", "data=moving_shapes", "budget.steps=2", "train.checkpoint_every=2",
            *[o for o in tiny_overrides(storage, str(data)) if not o.startswith("train.checkpoint_every")]]


TINY_EXORL = ["exorl_walker_random", "num_episodes=2", "episode_length=20", "episodes_per_task=1"]


def assert_clean(done: subprocess.CompletedProcess, rc: int = 0) -> None:
    """The exit code, no RLlib, and none of the noise that used to bury the user's output."""
    out = done.stdout + done.stderr
    assert done.returncode == rc, out[-4000:]
    assert "RLLIB_IMPORTED False" in done.stdout, out[-4000:]
    for noise in NOISE:
        assert noise not in out, (noise, out[-4000:])


# ---------------------------------------------------------------------------- GL backend
def test_rendering_without_a_backend_names_the_package(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "disable")
    monkeypatch.setenv(PROBED_FLAG, "1")
    with pytest.raises(RenderingUnavailable, match=r"libosmesa6 \(CPU\) or libegl1 \(GPU\)") as probed:
        require_rendering("rendering dm_control clips")
    assert "\n" not in str(probed.value)
    monkeypatch.delenv(PROBED_FLAG)
    with pytest.raises(RenderingUnavailable, match="MUJOCO_GL=disable turns rendering off"):
        require_rendering("rendering dm_control clips")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")  # the user's choice is theirs to keep
    require_rendering("rendering dm_control clips")


def test_without_gl_physics_imports_and_runs(tmp_path):
    """The probe finds nothing, MUJOCO_GL=disable, and dm_control, MuJoCo, OGBench and RLlib import and simulate."""
    script = ("import os, envs; from envs.dmc_gym import DMCTaskEnv; from envs.ogbench import env_id, register_envs; "
              "import gymnasium as gym, ray.rllib; register_envs(); "
              "env = gym.make(env_id('cube-single-play')); env.reset(seed=0); env.step(env.action_space.sample()); "
              "d = DMCTaskEnv('walker', 'walk', max_episode_steps=5); d.reset(seed=0); d.step(d.action_space.sample()); "
              "print('BACKEND', envs.probe_gl_backend(), os.environ['MUJOCO_GL'], envs.rendering_problem())")
    done = subprocess.run([sys.executable, "-c", script], env=cli_env(tmp_path, PYTHONPATH=str(NOGL)), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    line = done.stdout.split("BACKEND ", 1)[1]
    assert line.startswith("None disable ") and "libosmesa6" in line, line
    assert "GLFWError" not in done.stderr


# ---------------------------------------------------------------------------- the README's commands without GL
NOGL_OK = {
    "variants": ["variants"],
    "data-list": ["data", "list"],
    "data-make-moving-shapes": ["data", "make", "moving_shapes", "num_train=16", "num_val=8", "size=16"],
    "exorl-config": ["run", "--cfg", "data=exorl_walker_rnd", "variant=td_jepa", "budget.steps=1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NOGL_OK)
def test_readme_commands_work_without_gl(name, tmp_path):
    assert_clean(jepa(NOGL_OK[name], cli_env(tmp_path, PYTHONPATH=str(NOGL))))


def test_rendering_without_gl_fails_in_one_line(tmp_path):
    done = jepa(["data", "make", "dmc_clips", "num_train=2", "num_val=1", "frames=2"],
                cli_env(tmp_path, PYTHONPATH=str(NOGL)))
    assert_clean(done, rc=2)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "libosmesa6" in errors[0] and "Fix:" in errors[0], done.stderr
    assert not any(tmp_path.rglob("*.npz")), "nothing is written before the error"


# ---------------------------------------------------------------------------- Ray addresses
def test_address_comes_from_the_flag_then_ray_address_else_local(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) == ("local", "default")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # what Ray sets for a job's driver
    assert resolve_address(None) == ("10.0.0.1:6379", "RAY_ADDRESS")
    assert resolve_address("127.0.0.1:1") == ("127.0.0.1:1", "--address")


def test_unusable_addresses_fail_fast_naming_them():
    port = free_port()  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(RayAddressError, match=f"127.0.0.1:{port}.*Fix:"):
        check_reachable(f"127.0.0.1:{port}", "--address")
    with pytest.raises(RayAddressError, match=f"ray://127.0.0.1:{port}"):
        check_reachable(f"ray://127.0.0.1:{port}", "--address")
    assert time.perf_counter() - start < 5
    with pytest.raises(RayAddressError, match="dashboard .*ray job submit --address http://head:8265"):
        check_reachable("http://head:8265", "RAY_ADDRESS")
    with pytest.raises(RayAddressError, match="not a Ray address"):
        check_reachable("gcs://head", "--address")
    check_reachable("local", "default")
    with socket.create_server(("127.0.0.1", 0)) as server:
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", "--address")


@pytest.mark.parametrize("command", [["run", "variant=vjepa", "budget.steps=2"], ["data", "make", "moving_shapes"]])
def test_cli_gives_up_on_an_unreachable_address(command, tmp_path):
    port = free_port()
    start = time.perf_counter()
    done = jepa([*command, "--address", f"127.0.0.1:{port}"], cli_env(tmp_path), timeout=120)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"error: cannot reach Ray at 127.0.0.1:{port}" in done.stderr and "Fix:" in done.stderr
    assert time.perf_counter() - start < 60  # imports and planning on a busy CPU; the probe itself takes ms


def test_ctrl_c_stops_ray_init_that_waits_on_a_silent_address(tmp_path):
    """Something listens but never answers: Ray's C++ connection loop waits ~35 s, deferring Python's
    KeyboardInterrupt; while ray.init runs, SIGINT must end the process at once."""
    script = ("import sys, ray; from orchestrator.ray_connect import start_ray; print('CONNECTING', flush=True); "
              "start_ray(sys.argv[1])")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        child = subprocess.Popen([sys.executable, "-c", script, f"127.0.0.1:{silent.getsockname()[1]}"],
                                 env=cli_env(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        try:
            assert child.stdout.readline().strip() == "CONNECTING"
            time.sleep(4)  # well inside ray.init's connection attempt
            assert child.poll() is None, child.stderr.read()[-3000:]
            child.send_signal(signal.SIGINT)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == -signal.SIGINT


# ---------------------------------------------------------------------------- a dead head left behind
def pids_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            alive = entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if alive and text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture(scope="module")
def dead_head():
    """A Ray temp dir whose address file names a head that was killed (-9), as an interrupted test leaves it.

    The commands then also run without GL (each costs a Ray start, so one test covers both conditions)."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths live under it
    env = cli_env(temp, RAY_TMPDIR=str(temp))
    port = free_port()
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    address_file = temp / "ray" / "ray_current_cluster"
    assert address_file.is_file()
    started = pids_mentioning(str(temp))
    assert started, "the head's processes run with its temp dir on their command lines"
    for pid in started:  # only the processes of the head this fixture started
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pids_mentioning(str(temp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert address_file.is_file(), "Ray's address file must outlive its head for this test"
    yield temp, {**env, "PYTHONPATH": str(NOGL)}
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_data_make_with_ray_tasks_ignores_a_dead_head(dead_head):
    """ExoRL's collector: dm_control physics in Ray tasks (their workers without GL too), its own local Ray."""
    temp, env = dead_head
    assert_clean(jepa(["data", "make", *TINY_EXORL], env, timeout=180))


@pytest.mark.slow
def test_training_run_ignores_a_dead_head(dead_head, tmp_path):
    """The README's `jepa run` (a tiny one), without GL, starts its own Ray rather than joining the dead head."""
    temp, env = dead_head
    assert_clean(jepa(tiny_run(tmp_path / "runs", tmp_path / "data"), env, timeout=300))
