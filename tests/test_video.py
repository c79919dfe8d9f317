"""Tests for the video datasets: synthetic moving shapes, the disk cache (envs.cache), and mp4 clips."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.cache import data_root
from envs.clips import NORM_MEAN, NORM_STD, VideoClips
from envs.moving_shapes import (
    NUM_CLASSES,
    NUM_DIRECTIONS,
    SHAPE_CLASSES,
    MovingShapesConfig,
    ensure_moving_shapes,
    generate_moving_shapes,
    load_moving_shapes,
)
from envs.mp4 import Mp4Clips, write_mp4

# Any shape has a channel >= 170 and backgrounds stay below ~130: a simple threshold finds shapes.
SHAPE_THRESHOLD = 150

SMALL = MovingShapesConfig(num_train=40, num_val=12, shard_size=16)


def _unnormalise(video: torch.Tensor) -> np.ndarray:
    """Model input [3, T, H, W] back to 0..255 frames [T, H, W, 3] for comparisons."""
    return ((video * NORM_STD + NORM_MEAN) * 255.0).permute(1, 2, 3, 0).numpy()


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


def test_generation_shapes_and_dtypes():
    cfg = MovingShapesConfig(frames=6, size=24)
    clips = generate_moving_shapes(cfg, "train", 0, 5)
    assert clips["video"].shape == (5, 6, 24, 24, 3)
    assert clips["video"].dtype == np.uint8
    assert clips["shape"].shape == clips["motion"].shape == (5,)
    assert clips["shape"].dtype == clips["motion"].dtype == np.int64


def test_generation_is_deterministic():
    cfg = MovingShapesConfig()
    first = generate_moving_shapes(cfg, "train", 0, 16)
    second = generate_moving_shapes(cfg, "train", 0, 16)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_chunked_generation_matches_one_shot():
    cfg = MovingShapesConfig()
    whole = generate_moving_shapes(cfg, "val", 0, 12)
    chunks = [generate_moving_shapes(cfg, "val", start, count) for start, count in ((0, 5), (5, 1), (6, 6))]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([chunk[key] for chunk in chunks]))


def test_splits_and_seeds_give_different_clips():
    cfg = MovingShapesConfig()
    train = generate_moving_shapes(cfg, "train", 0, 4)["video"]
    val = generate_moving_shapes(cfg, "val", 0, 4)["video"]
    reseeded = generate_moving_shapes(MovingShapesConfig(seed=1), "train", 0, 4)["video"]
    assert not np.array_equal(train, val)
    assert not np.array_equal(train, reseeded)


def test_labels_in_range_and_roughly_balanced():
    clips = generate_moving_shapes(MovingShapesConfig(), "train", 0, 1024)
    for key, classes in (("shape", len(SHAPE_CLASSES)), ("motion", NUM_DIRECTIONS)):
        labels = clips[key]
        assert labels.min() >= 0 and labels.max() < classes
        counts = np.bincount(labels, minlength=classes)
        expected = len(labels) / classes
        assert counts.min() > 0.7 * expected and counts.max() < 1.3 * expected, counts


def _shape_pixels(video: np.ndarray) -> np.ndarray:
    """Boolean [..., H, W] mask of pixels covered by some shape."""
    return video.max(axis=-1) >= SHAPE_THRESHOLD


def test_motion_label_is_the_direction_the_target_moves():
    # Without distractors the only shape is the target, so its centroid shows its motion.
    clips = generate_moving_shapes(MovingShapesConfig(num_distractors=0), "train", 0, 64)
    for video, motion in zip(clips["video"], clips["motion"]):
        mask = _shape_pixels(video)
        first_rows, first_cols = np.nonzero(mask[0])
        last_rows, last_cols = np.nonzero(mask[-1])
        d_row = last_rows.mean() - first_rows.mean()
        d_col = last_cols.mean() - first_cols.mean()
        angle = np.degrees(np.arctan2(-d_row, d_col))  # north (up) is +90 degrees
        assert int(np.round(angle / (360 / NUM_DIRECTIONS))) % NUM_DIRECTIONS == motion


def test_frame_differences_concentrate_on_the_target():
    # Target and background of a clip do not depend on the number of distractors,
    # so comparing the two renderings tells which pixels belong to whom.
    with_distractors = generate_moving_shapes(MovingShapesConfig(num_distractors=2), "train", 0, 64)
    target_only = generate_moving_shapes(MovingShapesConfig(num_distractors=0), "train", 0, 64)
    np.testing.assert_array_equal(with_distractors["motion"], target_only["motion"])

    video = with_distractors["video"].astype(np.float64)
    alone = target_only["video"].astype(np.float64)
    energy = (np.diff(video, axis=1) ** 2).sum(axis=(1, 4))  # [N, H, W]
    target_zone = _shape_pixels(alone).any(axis=1)
    distractor_zone = (np.abs(video - alone).max(axis=-1) > 20).any(axis=1) & ~target_zone
    assert distractor_zone.any()
    target_energy = energy[target_zone].sum()
    distractor_energy = energy[distractor_zone].sum()
    background_energy = energy[~target_zone & ~distractor_zone].sum()
    assert target_energy > 2 * distractor_energy
    assert background_energy < 0.1 * energy.sum()


def test_distractors_hide_the_target_in_single_frames():
    clips = generate_moving_shapes(MovingShapesConfig(num_distractors=2), "train", 0, 32)
    lone = generate_moving_shapes(MovingShapesConfig(num_distractors=0), "train", 0, 32)
    covered = _shape_pixels(clips["video"][:, 0]).sum()
    covered_by_target = _shape_pixels(lone["video"][:, 0]).sum()
    assert covered > 2 * covered_by_target


def test_generation_is_fast():
    started = time.perf_counter()
    generate_moving_shapes(MovingShapesConfig(), "train", 0, 512)
    assert time.perf_counter() - started < 5.0


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError):
        MovingShapesConfig(frames=1)
    with pytest.raises(ValueError):
        MovingShapesConfig(speed_min=0.2, speed_max=0.1)


def test_fingerprint_tracks_every_field():
    assert MovingShapesConfig().fingerprint() == MovingShapesConfig().fingerprint()
    assert MovingShapesConfig().fingerprint() != MovingShapesConfig(seed=1).fingerprint()
    assert MovingShapesConfig().fingerprint() != MovingShapesConfig(shard_size=7).fingerprint()


# --------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------


def test_data_root_prefers_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JEPA_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("JEPA_DATA")
    assert "jepa-orchestrator" in str(data_root())


def test_ensure_then_load_roundtrip(tmp_path):
    dataset_dir = ensure_moving_shapes(SMALL, root=tmp_path)
    assert dataset_dir == tmp_path / "moving_shapes" / SMALL.fingerprint()

    meta = json.loads((dataset_dir / "meta.json").read_text())
    assert meta["counts"] == {"train": 40, "val": 12}
    assert meta["shards"]["train"] == ["train-00000.npz", "train-00001.npz", "train-00002.npz"]
    assert meta["config"]["seed"] == SMALL.seed
    assert not list(dataset_dir.glob("*.tmp-*"))

    for split, count in (("train", 40), ("val", 12)):
        loaded = load_moving_shapes(dataset_dir, split)
        expected = generate_moving_shapes(SMALL, split, 0, count)
        for key in expected:
            np.testing.assert_array_equal(loaded[key], expected[key])


def test_ensure_is_idempotent(tmp_path):
    dataset_dir = ensure_moving_shapes(SMALL, root=tmp_path)
    files = sorted(dataset_dir.glob("*.npz")) + [dataset_dir / "meta.json"]
    mtimes = [path.stat().st_mtime_ns for path in files]
    assert ensure_moving_shapes(SMALL, root=tmp_path) == dataset_dir
    assert [path.stat().st_mtime_ns for path in files] == mtimes


def test_changed_config_gets_its_own_dataset(tmp_path):
    first = ensure_moving_shapes(SMALL, root=tmp_path)
    other_cfg = MovingShapesConfig(num_train=40, num_val=12, shard_size=16, seed=3)
    second = ensure_moving_shapes(other_cfg, root=tmp_path)
    assert first != second
    assert (first / "meta.json").is_file() and (second / "meta.json").is_file()
    assert not np.array_equal(
        load_moving_shapes(first, "val")["video"], load_moving_shapes(second, "val")["video"]
    )


def test_half_written_dataset_is_regenerated(tmp_path):
    dataset_dir = tmp_path / "moving_shapes" / SMALL.fingerprint()
    dataset_dir.mkdir(parents=True)
    (dataset_dir / "train-00000.npz").write_bytes(b"truncated")
    ensure_moving_shapes(SMALL, root=tmp_path)
    assert len(load_moving_shapes(dataset_dir, "train")["video"]) == 40


def test_concurrent_ensure_calls_agree(tmp_path):
    with ThreadPoolExecutor(max_workers=4) as pool:
        dirs = list(pool.map(lambda _: ensure_moving_shapes(SMALL, root=tmp_path), range(4)))
    assert len(set(dirs)) == 1
    assert len(load_moving_shapes(dirs[0], "val")["shape"]) == 12


def test_load_without_dataset_names_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="jepa data make") as excinfo:
        load_moving_shapes(missing, "train")
    assert str(missing) in str(excinfo.value)


def test_load_unknown_split(tmp_path):
    dataset_dir = ensure_moving_shapes(SMALL, root=tmp_path)
    with pytest.raises(ValueError, match="test"):
        load_moving_shapes(dataset_dir, "test")


# --------------------------------------------------------------------------
# Torch datasets
# --------------------------------------------------------------------------


def test_video_clips_items():
    arrays = generate_moving_shapes(MovingShapesConfig(frames=4, size=16), "val", 0, 3)
    dataset = VideoClips(arrays, NUM_CLASSES)
    assert len(dataset) == 3
    assert dataset.labels == ("shape", "motion")
    assert dataset.num_classes == {"shape": 4, "motion": 8}

    item = dataset[1]
    assert item["video"].shape == (3, 4, 16, 16)
    assert item["video"].dtype == torch.float32
    assert item["shape"].dtype == item["motion"].dtype == torch.int64
    assert int(item["shape"]) == arrays["shape"][1]
    assert int(item["motion"]) == arrays["motion"][1]
    np.testing.assert_allclose(_unnormalise(item["video"]), arrays["video"][1], atol=1e-3)


def test_video_clips_batch_through_dataloader():
    dataset = VideoClips(generate_moving_shapes(MovingShapesConfig(), "val", 0, 4), NUM_CLASSES)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["video"].shape == (4, 3, 8, 32, 32)
    assert batch["motion"].shape == (4,)


@pytest.fixture
def mp4_dataset(tmp_path: Path):
    """Three short mp4 files (one listed by absolute path) and their CSV."""
    clips = generate_moving_shapes(MovingShapesConfig(frames=8, size=32), "val", 0, 3)
    (tmp_path / "videos").mkdir()
    lines = []
    for index, frames in enumerate(clips["video"]):
        path = tmp_path / "videos" / f"clip{index}.mp4"
        write_mp4(path, frames)
        listed = path if index == 0 else path.relative_to(tmp_path)
        lines.append(f"{listed} {index + 2}")
    csv_path = tmp_path / "clips.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, clips


def test_mp4_roundtrip(mp4_dataset):
    csv_path, clips = mp4_dataset
    dataset = Mp4Clips(csv_path, frames=8, size=32)
    assert len(dataset) == 3
    assert dataset.num_classes == {"label": 5}
    for index in range(3):
        item = dataset[index]
        assert item["video"].shape == (3, 8, 32, 32)
        assert item["video"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and int(item["label"]) == index + 2
        error = np.abs(_unnormalise(item["video"]) - clips["video"][index]).mean()
        assert error < 10.0, error


def test_mp4_stride_resize_and_padding(tmp_path):
    # Flat grey frames whose brightness encodes their index.
    levels = 20 + 40 * np.arange(4)
    frames = np.broadcast_to(levels[:, None, None, None], (4, 32, 32, 3)).astype(np.uint8)
    write_mp4(tmp_path / "ramp.mp4", frames)
    (tmp_path / "ramp.csv").write_text("ramp.mp4 0\n")

    item = Mp4Clips(tmp_path / "ramp.csv", frames=5, size=16, frame_step=2)[0]
    assert item["video"].shape == (3, 5, 16, 16)
    brightness = _unnormalise(item["video"]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(brightness, levels[[0, 2, 3, 3, 3]], atol=4)


def test_malformed_csv_line_is_named(tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("a.mp4 1\nb.mp4 not-a-label\n")
    with pytest.raises(ValueError, match="line 2"):
        Mp4Clips(csv_path, frames=4, size=16)


def test_missing_csv_and_missing_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        Mp4Clips(tmp_path / "nope.csv", frames=4, size=16)
    csv_path = tmp_path / "clips.csv"
    csv_path.write_text("ghost.mp4 0\n")
    dataset = Mp4Clips(csv_path, frames=4, size=16)
    with pytest.raises(FileNotFoundError, match="ghost.mp4"):
        dataset[0]


def test_write_mp4_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "float.mp4", np.zeros((2, 16, 16, 3), dtype=np.float32))
