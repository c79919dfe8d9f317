"""Tests for the rendered dm_control clips in envs.dmc_clips: generation, labels, disk cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from envs import default_gl_backend, dm_control_suite, dmc_clips, rendering_problem
from envs.clips import NORM_MEAN, NORM_STD, VideoClips
from envs.dmc_clips import (
    DMC_DOMAINS,
    MOTION_CLASSES,
    STILL_SPEED,
    DmcClipsConfig,
    dmc_num_classes,
    ensure_dmc_clips,
    generate_dmc_clips,
    load_dmc_clips,
)

# Rendering needs an OpenGL library (EGL or OSMesa); without one these tests skip, saying what to install.
needs_gl = pytest.mark.skipif(rendering_problem() is not None, reason=str(rendering_problem()))

TINY = DmcClipsConfig(num_train=8, num_val=4, frames=4, size=32, warmup_steps=10, shard_size=5)
BACKWARD, STILL, FORWARD = range(3)


@pytest.fixture(scope="module")
def tiny_train() -> dict[str, np.ndarray]:
    return generate_dmc_clips(TINY, "train", 0, 8)


def _assert_same_clips(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


@needs_gl
def test_shapes_and_dtypes(tiny_train):
    assert tiny_train["video"].shape == (8, 4, 32, 32, 3)
    assert tiny_train["video"].dtype == np.uint8
    assert tiny_train["domain"].shape == tiny_train["motion"].shape == (8,)
    assert tiny_train["domain"].dtype == tiny_train["motion"].dtype == np.int64
    assert tiny_train["speed"].dtype == np.float32


@needs_gl
def test_frames_are_rendered_scenes(tiny_train):
    frames = tiny_train["video"].astype(np.float64)
    assert frames.std(axis=(2, 3, 4)).min() > 5, "a frame is blank"


@needs_gl
def test_generation_is_deterministic(tiny_train):
    _assert_same_clips(tiny_train, generate_dmc_clips(TINY, "train", 0, 8))


@needs_gl
def test_chunked_generation_matches_one_shot(tiny_train):
    chunks = [generate_dmc_clips(TINY, "train", start, n) for start, n in ((0, 3), (3, 1), (4, 4))]
    joined = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in tiny_train}
    _assert_same_clips(tiny_train, joined)


@needs_gl
def test_splits_and_seeds_give_different_clips(tiny_train):
    val = generate_dmc_clips(TINY, "val", 0, 2)["video"]
    reseeded_cfg = DmcClipsConfig(**{**vars(TINY), "seed": 1})
    reseeded = generate_dmc_clips(reseeded_cfg, "train", 0, 2)["video"]
    assert not np.array_equal(tiny_train["video"][:2], val)
    assert not np.array_equal(tiny_train["video"][:2], reseeded)


@needs_gl
def test_labels_in_range(tiny_train):
    assert tiny_train["domain"].min() >= 0 and tiny_train["domain"].max() < len(TINY.domains)
    assert tiny_train["motion"].min() >= 0 and tiny_train["motion"].max() < len(MOTION_CLASSES)


@needs_gl
def test_motion_label_thresholds_the_forward_speed(tiny_train):
    speed, motion = tiny_train["speed"], tiny_train["motion"]
    np.testing.assert_array_equal(motion == FORWARD, speed >= STILL_SPEED)
    np.testing.assert_array_equal(motion == BACKWARD, speed <= -STILL_SPEED)


def _cart_column(frames: np.ndarray) -> np.ndarray:
    """Mean column of the orange cart and pole in each frame [T]; the background is blue."""
    pixels = frames.astype(np.float64)
    orange = pixels[..., 0] - pixels[..., 2] > 40
    return np.array([np.nonzero(mask)[1].mean() for mask in orange])


@needs_gl
def test_motion_label_matches_the_cart_moving_on_screen():
    # Cartpole's camera is fixed with +x to the right, so the cart's image column
    # shows the physical displacement; a long frame_skip makes it several pixels.
    cfg = DmcClipsConfig(domains=("cartpole",), frames=4, size=32, frame_skip=8)
    clips = generate_dmc_clips(cfg, "train", 0, 12)
    moving = np.abs(clips["speed"]) > 0.5
    assert moving.sum() >= 3, clips["speed"]
    for frames, motion in zip(clips["video"][moving], clips["motion"][moving]):
        shift = _cart_column(frames)[-1] - _cart_column(frames)[0]
        assert abs(shift) > 0.5, shift
        assert motion == (FORWARD if shift > 0 else BACKWARD), (shift, motion)


@needs_gl
def test_clips_differ_between_domains():
    # Each clip's first frame is nearest (in pixels) to the other clip of its own domain.
    firsts, owners = [], []
    for domain in DMC_DOMAINS:
        cfg = DmcClipsConfig(domains=(domain,), frames=2, size=32, warmup_steps=5)
        firsts.extend(generate_dmc_clips(cfg, "val", 0, 2)["video"][:, 0].astype(np.float64))
        owners.extend([domain, domain])
    for i, frame in enumerate(firsts):
        distances = [np.abs(frame - other).mean() for other in firsts]
        distances[i] = np.inf
        assert owners[int(np.argmin(distances))] == owners[i]


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="unknown domains"):
        DmcClipsConfig(domains=("walker", "unicorn"))
    with pytest.raises(ValueError, match="frames"):
        DmcClipsConfig(frames=1)
    with pytest.raises(ValueError, match="frame_skip"):
        DmcClipsConfig(frame_skip=0)
    with pytest.raises(ValueError):
        generate_dmc_clips(TINY, "train", -1, 2)


def test_fingerprint_tracks_every_field():
    as_list = DmcClipsConfig(domains=list(DmcClipsConfig().domains))
    assert DmcClipsConfig().fingerprint() == as_list.fingerprint()
    assert DmcClipsConfig().fingerprint() != DmcClipsConfig(frame_skip=3).fingerprint()
    assert DmcClipsConfig().fingerprint() != DmcClipsConfig(domains=("walker",)).fingerprint()


def test_user_choice_of_gl_backend_is_kept(monkeypatch):
    dm_control_suite()  # import under the real setting; later calls only set the variable
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    dm_control_suite()
    assert os.environ["MUJOCO_GL"] == "glfw"
    monkeypatch.delenv("MUJOCO_GL")
    dm_control_suite()
    assert os.environ["MUJOCO_GL"] == default_gl_backend()  # probed: egl, osmesa, or "disable" without either


# --------------------------------------------------------------------------
# Disk cache and torch dataset
# --------------------------------------------------------------------------


@needs_gl
def test_ensure_then_load_roundtrip_without_regeneration(tmp_path, tiny_train, monkeypatch):
    dataset_dir = ensure_dmc_clips(TINY, root=tmp_path)
    assert dataset_dir == tmp_path / "dmc_clips" / TINY.fingerprint()

    meta = json.loads((dataset_dir / "meta.json").read_text())
    assert meta["counts"] == {"train": 8, "val": 4}
    assert meta["shards"]["train"] == ["train-00000.npz", "train-00001.npz"]
    assert meta["motion_classes"] == list(MOTION_CLASSES)
    assert not list(dataset_dir.glob("*.tmp-*"))
    _assert_same_clips(load_dmc_clips(dataset_dir, "train"), tiny_train)
    assert len(load_dmc_clips(dataset_dir, "val")["video"]) == 4

    files = sorted(dataset_dir.glob("*.npz")) + [dataset_dir / "meta.json"]
    mtimes = [path.stat().st_mtime_ns for path in files]
    monkeypatch.setattr(dmc_clips, "generate_dmc_clips", lambda *args: pytest.fail("regenerated"))
    assert ensure_dmc_clips(TINY, root=tmp_path) == dataset_dir
    assert [path.stat().st_mtime_ns for path in files] == mtimes


def test_load_without_dataset_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="jepa data make dmc_clips"):
        load_dmc_clips(tmp_path / "nowhere", "train")


@needs_gl
def test_video_clips_serve_domain_and_motion(tiny_train):
    dataset = VideoClips(tiny_train, num_classes=dmc_num_classes(TINY))
    assert dataset.labels == ("domain", "motion")
    assert dataset.num_classes == {"domain": 4, "motion": 3}

    item = dataset[2]
    assert set(item) == {"video", "domain", "motion"}
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert item["domain"].dtype == item["motion"].dtype == torch.int64
    assert int(item["domain"]) == tiny_train["domain"][2]
    assert int(item["motion"]) == tiny_train["motion"][2]
    unit = item["video"] * NORM_STD + NORM_MEAN
    frames = unit.permute(1, 2, 3, 0).numpy() * 255
    np.testing.assert_allclose(frames, tiny_train["video"][2], atol=1e-3)


@needs_gl
def test_registry_entry_makes_and_loads_dmc_clips(tmp_path):
    """`data=dmc_clips` through the orchestrator: config node -> generator -> dataset the trainer reads."""
    from orchestrator import registry
    from orchestrator.config import compose_run

    cfg = compose_run(["data=dmc_clips", "budget.steps=1", "model.tubelet=2", "data.num_train=4", "data.num_val=2",
                       "data.frames=4", "data.warmup_steps=5", "data.domains=[walker,cartpole]", f"data.root={tmp_path}"])
    entry = registry.dataset("dmc_clips")
    assert entry.spec(cfg.data).num_classes == {"domain": 2, "motion": 3}
    path = entry.prepare(cfg.data)
    assert path.startswith(str(tmp_path))
    item = entry.load(cfg.data, "val")[0]
    assert item["video"].shape == (3, 4, 32, 32) and int(item["domain"]) in (0, 1)
