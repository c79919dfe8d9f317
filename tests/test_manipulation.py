"""Manipulation demos with 64×64 pixel observations (envs/manipulation.py, issue 19): frames rendered next to
states that stay exactly a state-only dataset's, ALOHA-style frames read back, and bad frame files refused."""
from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest

from envs import manipulation, rendering_problem
from envs.manipulation import (
    FILE,
    DemoConfig,
    DemoError,
    Episode,
    generate,
    load_episodes,
    write_episodes,
)
from envs.ogbench import PIXELS_SIZE

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")
needs_gl = pytest.mark.skipif(rendering_problem() is not None, reason=str(rendering_problem()))
FRAME = (PIXELS_SIZE, PIXELS_SIZE, 3)


def test_state_only_configs_keep_their_fingerprints():
    """The values of these configs before `pixels` existed: cached state datasets stay valid."""
    assert DemoConfig().fingerprint() == "9e5498dee3d0"
    assert DemoConfig(num_demos=100, seed=2).fingerprint() == "57931bd92c5f"
    assert DemoConfig(env_name="puzzle-3x3", num_extra=50, render="full").fingerprint() == "62f84a9462cb"
    pixels = DemoConfig(pixels=True)
    assert len({pixels.fingerprint(), replace(pixels, render="full").fingerprint(), DemoConfig().fingerprint()}) == 3
    with pytest.raises(DemoError, match="render is 'fast'. Fix: use one of"):
        DemoConfig(pixels=True, render="fast")


@needs_gl
@pytest.mark.parametrize("env_name, demos, steps", [("cube-single", 2, 20), ("puzzle-3x3", 1, 10)])
def test_pixel_demos_store_frames_next_to_the_state_only_states(tmp_path, env_name, demos, steps):
    cfg = DemoConfig(env_name=env_name, num_demos=demos, max_steps=steps)
    items = manipulation._split_plan(cfg, "train")
    states = manipulation.collect(cfg, "train", items)
    write_episodes(tmp_path / FILE, manipulation.collect(replace(cfg, pixels=True), "train", items), env_name, {})
    with_pixels = load_episodes(tmp_path / FILE)
    assert len(with_pixels) == len(states) == demos
    for plain, ep in zip(states, with_pixels, strict=True):
        for key in ("observations", "actions", "goal", "object_state", "final_observation"):
            np.testing.assert_array_equal(getattr(ep, key), getattr(plain, key), err_msg=key)
        assert (plain.success, plain.task_id, plain.images) == (ep.success, ep.task_id, None)
        assert ep.images.dtype == ep.goal_image.dtype == np.uint8
        assert ep.images.shape == (len(ep), *FRAME) and ep.goal_image.shape == FRAME
        assert np.abs(ep.images[-1].astype(int) - ep.images[0]).mean() > 0.2  # the arm moved on screen
        assert ep.images.std() > 10  # a scene, not a blank buffer
        assert not np.array_equal(ep.goal_image, ep.images[0])  # the goal frame is the goal's, not the start's


def test_truncated_pixel_file_is_a_clear_error(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_episodes(path, [episode(40), episode(30)], "cube-single", {})
    data = path.read_bytes()
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DemoError, match="not a readable HDF5 file.*Fix: regenerate or re-copy it"):
        load_episodes(broken)


def test_pixel_generation_without_opengl_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "disable")
    monkeypatch.delenv("JEPA_GL_PROBED", raising=False)
    with pytest.raises(RuntimeError, match=r"data.pixels=true.*Fix: unset MUJOCO_GL"):
        generate(DemoConfig(num_demos=1, num_val=1, pixels=True), tmp_path)
    assert not any(tmp_path.rglob("*.hdf5"))


def episode(T: int = 5, frames: int | None = None) -> Episode:
    rng = np.random.default_rng(T)
    frames = T if frames is None else frames
    return Episode(rng.normal(size=(T, 3)).astype(np.float32), rng.normal(size=(T, 2)).astype(np.float32),
                   np.zeros(3, np.float32), images=rng.integers(0, 256, (frames, *FRAME), dtype=np.uint8),
                   goal_image=np.zeros(FRAME, np.uint8))


def test_our_layout_round_trips_frames_and_refuses_mismatched_ones(tmp_path):
    good = tmp_path / "good.hdf5"
    write_episodes(good, [episode(5), episode(7)], "cube-single", {})
    read = load_episodes(good)
    assert [len(ep) for ep in read] == [5, 7]
    np.testing.assert_array_equal(read[1].images, episode(7).images)
    assert read[0].goal_image.dtype == np.uint8
    short = tmp_path / "short.hdf5"
    write_episodes(short, [episode(5), episode(7, frames=6)], "cube-single", {})
    with pytest.raises(DemoError, match="episode_00001 images has 6 frames for 7 actions. Fix: store one frame per"):
        load_episodes(short)
    lone = episode(5)
    lone.goal_image = None
    write_episodes(tmp_path / "lone.hdf5", [lone], "cube-single", {})
    with pytest.raises(DemoError, match="only one of images and goal_image. Fix: regenerate"):
        load_episodes(tmp_path / "lone.hdf5")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_episodes(mixed / "a.hdf5", [episode(5)], "cube-single", {})
    plain = episode(5)
    plain.images = plain.goal_image = None
    write_episodes(mixed / "b.hdf5", [plain], "cube-single", {})
    with pytest.raises(DemoError, match="frame shapes.*Fix: keep one robot.*frames in all episodes or none"):
        load_episodes(mixed)


def write_aloha(path, T: int = 6, cameras=("top", "wrist"), frames: int | None = None, shape=(24, 32, 3)):
    """An ACT/ALOHA episode as ACT's record_sim_episodes writes it: qpos, action and one frame stack per camera."""
    rng = np.random.default_rng(T)
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=rng.normal(size=(T, 14)))
        obs.create_dataset("qvel", data=rng.normal(size=(T, 14)))
        for i, name in enumerate(cameras):
            count = frames or T
            ramp = np.arange(count, dtype=np.uint8).reshape(count, *[1] * len(shape))  # frame t's pixels: 40 i + t
            obs.create_dataset(f"images/{name}", data=np.full((count, *shape), 40 * i, np.uint8) + ramp)
        f.create_dataset("action", data=rng.normal(size=(T, 14)))


def test_reads_aloha_frames_of_the_first_camera(tmp_path):
    write_aloha(tmp_path / "episode_0.hdf5", T=6, cameras=("wrist", "top"))
    [ep] = load_episodes(tmp_path / "episode_0.hdf5")
    assert ep.meta["camera"] == "top" and ep.images.dtype == np.uint8 and ep.images.shape == (6, 24, 32, 3)
    np.testing.assert_array_equal(ep.images[:, 0, 0, 0], np.arange(6) + 40)  # "top" was written second
    np.testing.assert_array_equal(ep.goal_image, ep.images[-1])  # the goal is the last observation
    write_aloha(tmp_path / "plain.hdf5", cameras=())
    assert load_episodes(tmp_path / "plain.hdf5")[0].images is None


@pytest.mark.parametrize("frames, shape, message", [
    (5, (24, 32, 3), "/observations/images/top has 5 frames for 6 actions. Fix: store one frame per action"),
    (None, (6000,), r"images/top is uint8 \[6, 6000\], not uint8 frames \[T, H, W, 3\]. Fix: .*compress=True"),
])
def test_bad_aloha_frames_are_clear_errors(tmp_path, frames, shape, message):
    write_aloha(tmp_path / "episode_0.hdf5", cameras=("top",), frames=frames, shape=shape)
    with pytest.raises(DemoError, match=message):
        load_episodes(tmp_path / "episode_0.hdf5")
