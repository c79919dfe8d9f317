"""AD-L-JEPA (issue 21): the LiDAR scenes, BEV binning, masks, variance hinge, BEV AP, bad input, one run."""
import math

import numpy as np
import pytest
import torch

from envs import lidar
from orchestrator.evaluate.bev_detection import (
    average_precision,
    centre_heatmaps,
    peaks,
)
from variants.ad_l_jepa import split_cells, variance_hinge

GRID = lidar.Grid(size=32, cell=0.5)


def test_ray_caster_hits_a_planted_box_at_its_range():
    """A 2 m cube centred 8 m ahead: the forward ray of the level beam returns 7 m (its near face)."""
    box = np.array([[0, 8.0, 0.0, 1.0, 2.0, 2.0, 2.0, 0.0]])
    sensor = lidar.Lidar(beams=3, azimuths=360, fov_low=-2.0, fov_high=2.0, sensor_height=1.0, max_range=20.0)
    points = lidar.ray_cast(box, sensor)
    ahead = points[(np.abs(points[:, 1]) < 1e-6) & (np.abs(points[:, 2] - 1.0) < 1e-6)]
    assert len(ahead) == 1 and ahead[0, 0] == pytest.approx(7.0, abs=1e-5)
    hits = np.linalg.norm(points[:, :2], axis=1)
    in_front = np.abs(np.arctan2(points[:, 1], points[:, 0])) < math.atan2(1.0, 7.0) - 0.01
    assert np.all((hits[in_front] >= 7.0 - 1e-5) & (hits[in_front] <= 7.0 / math.cos(math.atan2(1.0, 7.0)) + 1e-3))
    rotated = box.copy()
    rotated[0, 7] = math.pi / 2  # a cube turned 90 degrees is the same cube
    assert np.allclose(lidar.ray_cast(rotated, sensor), points, atol=1e-4)


def test_bev_binning_keeps_every_point_in_range():
    rng = np.random.default_rng(0)
    scene = lidar.make_scene(rng, GRID, lidar.Lidar())
    inside = lidar.crop(scene.points, GRID)
    assert 0 < len(inside) < len(scene.points)  # the scan reaches past the square
    grid = lidar.bev(scene.points, GRID, crop_outside=True)
    row, col = lidar.cell_index(inside, GRID)
    assert np.all(grid[0, row, col] == 1.0)  # every in-range point's cell is occupied
    assert grid[0].sum() == len(set(zip(row.tolist(), col.tolist())))  # and no other cell
    edge = np.array([[GRID.half - 1e-4, -GRID.half, 0.0, 0.5], [-GRID.half, GRID.half - 1e-4, GRID.z_max, 0.5]], np.float32)
    assert lidar.bev(edge, GRID)[0].sum() == 2  # points on the edges are kept, not dropped
    occupied = grid[0] > 0
    assert np.all((grid[1][occupied] >= 0) & (grid[1][occupied] <= 1))


def test_generated_scenes_are_deterministic_and_vary_in_size():
    a = lidar.make_scene(np.random.default_rng(3), GRID, lidar.Lidar())
    b = lidar.make_scene(np.random.default_rng(3), GRID, lidar.Lidar())
    c = lidar.make_scene(np.random.default_rng(4), GRID, lidar.Lidar())
    assert np.array_equal(a.points, b.points) and np.array_equal(a.boxes, b.boxes)
    assert len(a.points) != len(c.points)
    arrays = lidar.sample_arrays(a.boxes, a.points, GRID)
    objects = arrays["boxes"][arrays["boxes"][:, 0] >= 0]
    assert len(objects) == int((a.boxes[:, 0] < len(lidar.CLASSES)).sum()) and arrays["occupancy"].sum() > 0


def test_context_and_target_cells_are_disjoint_and_cover_the_non_empty_cells():
    scenes = [lidar.make_scene(np.random.default_rng(i), GRID, lidar.Lidar()) for i in range(4)]
    bev = torch.from_numpy(np.stack([lidar.sample_arrays(s.boxes, s.points, GRID)["bev"] for s in scenes]))
    nonempty, context, target = split_cells(bev, 0.5, torch.Generator().manual_seed(0))
    assert not (context & target).any()
    assert torch.equal(context | target, bev[:, 0] > 0) and torch.equal(nonempty, bev[:, 0] > 0)
    share = target.sum() / nonempty.sum()
    assert 0.4 < share < 0.6


def test_variance_hinge_is_zero_for_spread_embeddings_and_positive_for_collapsed():
    g = torch.Generator().manual_seed(0)
    spread = 3.0 * torch.randn(512, 16, generator=g)
    assert variance_hinge(spread).item() == 0.0
    collapsed = torch.ones(512, 16) + 1e-3 * torch.randn(512, 16, generator=g)
    assert variance_hinge(collapsed).item() > 0.9
    weights = torch.zeros(512)
    weights[:2] = 1  # only two rows count: the rest cannot hide a collapse
    mixed = torch.cat([torch.ones(2, 16), spread[2:]])
    assert variance_hinge(mixed, weights).item() > 0.9


def test_ap_of_perfect_predictions_is_one_and_of_misplaced_ones_is_zero():
    boxes = np.full((3, lidar.MAX_BOXES, 8), 0.0, np.float32)
    boxes[:, :, 0] = -1
    boxes[0, 0, :3] = [0, 3.0, 2.0]
    boxes[0, 1, :3] = [1, -5.0, 4.0]
    boxes[1, 0, :3] = [0, 6.0, -6.0]
    boxes[2, 0, :3] = [2, -2.0, -3.0]
    perfect = [np.array([[b[0], b[1], b[2], 1.0] for b in scene if b[0] >= 0]) for scene in boxes]
    assert average_precision(perfect, boxes) == {0: 1.0, 1: 1.0, 2: 1.0}
    far = [d + np.array([0, 2.5, 0, 0]) for d in perfect]  # 2.5 m off: beyond the 2 m radius
    assert all(v == 0.0 for v in average_precision(far, boxes).values())
    # a heatmap with its peaks on the boxes' centre cells decodes to AP 1 (within half a cell)
    heat = centre_heatmaps(torch.from_numpy(boxes), GRID.size, GRID.cell)
    assert average_precision(peaks(heat, GRID.size, GRID.cell), boxes) == {0: 1.0, 1: 1.0, 2: 1.0}


# ------------------------------------------------------------------------- bad input
def test_empty_cloud_and_points_outside_the_grid_are_clear_errors():
    with pytest.raises(lidar.LidarError, match="empty.*Fix"):
        lidar.bev(np.zeros((0, 4), np.float32), GRID)
    outside = np.array([[0.0, 0.0, 0.0, 0.1], [50.0, 0.0, 0.0, 0.1]], np.float32)
    with pytest.raises(lidar.LidarError, match="1 of 2 points lie outside the grid.*Fix"):
        lidar.bev(outside, GRID)
    assert lidar.bev(outside, GRID, crop_outside=True)[0].sum() == 1


def test_kitti_files_round_trip_and_bad_files_name_the_file(tmp_path):
    points = np.array([[1.0, 2.0, 0.5, 0.3], [-3.0, 1.0, 1.0, 0.9]], np.float32)
    good = tmp_path / "000001.bin"
    lidar.write_bin(good, points)
    assert np.array_equal(lidar.read_bin(good), points)
    bad = tmp_path / "000002.bin"
    bad.write_bytes(points.tobytes()[:-3])
    with pytest.raises(lidar.LidarError, match="000002.bin.*not a whole number of points.*Fix"):
        lidar.read_bin(bad)
    empty = tmp_path / "000003.bin"
    empty.write_bytes(b"")
    with pytest.raises(lidar.LidarError, match="000003.bin.*empty"):
        lidar.read_bin(empty)
    labels = tmp_path / "000001.txt"
    labels.write_text("Car 0.0 0 -1.5 100 100 200 200 1.5 1.8 4.2 2.0 1.6 10.0 0.0\n"
                      "DontCare -1 -1 -10 0 0 1 1 -1 -1 -1 -1000 -1000 -1000 -10\n")
    boxes = lidar.read_labels(labels)
    assert boxes.shape == (1, 8) and boxes[0, 0] == 0 and boxes[0, 1:3] == pytest.approx([10.0, -2.0])
    unknown = tmp_path / "000004.txt"
    unknown.write_text("Spaceship 0.0 0 -1.5 100 100 200 200 1.5 1.8 4.2 2.0 1.6 10.0 0.0\n")
    with pytest.raises(lidar.LidarError, match=r"000004.txt:1: unknown label class 'Spaceship'.*Fix"):
        lidar.read_labels(unknown)


def test_a_bev_variant_on_a_non_bev_model_is_a_config_error():
    from orchestrator.config import ConfigError, compose_run

    with pytest.raises(ConfigError, match="model.strides"):
        compose_run(["variant=ad_l_jepa", "data=lidar_scenes", "model=cnn", "budget.steps=1"])
    with pytest.raises(ConfigError, match="model"):
        compose_run(["variant=occupancy_mae", "data=lidar_scenes", "budget.steps=1"])  # the default ViT


# ------------------------------------------------------------------------- one run through the loop
@pytest.mark.parametrize("variant", ["ad_l_jepa", "occupancy_mae"])
def test_miniature_run_through_the_loop(ray_session, tmp_path, data_root, variant):
    from orchestrator.config import compose_run
    from orchestrator.results import ResultsStore
    from orchestrator.train import launch

    cfg = compose_run([f"variant={variant}", "data=lidar_scenes", "model=cnn", "model.strides=[1,1]", "model.channels=[8,16]",
                       f"storage={tmp_path}", "data.num_train=32", "data.num_val=16", "data.azimuths=180", "budget.steps=4",
                       "train.batch_size=4", "train.log_every=2", "eval.epochs=1", "eval.train_clips=32", "eval.val_clips=16",
                       "eval.kinds=[bev_detection]", f"sweep=adl_{variant}"])
    metrics = launch(cfg, f"{variant}-run")
    assert metrics["step"] == 4 and metrics["final"] and math.isfinite(metrics["loss"])
    for pct in (5, 20, 100):
        assert 0.0 <= metrics[f"bev_ap_{pct}"] <= 1.0 and 0.0 <= metrics[f"occ_iou_{pct}"] <= 1.0
        assert f"bev_ap_{pct}/random_init" in metrics and f"bev_ap_{pct}/raw_input" in metrics
    if variant == "ad_l_jepa":
        assert 0.0 < metrics["ema_init_share"] < 1.0 and metrics["variance_hinge"] >= 0.0
    rows = ResultsStore(tmp_path).metrics(f"adl_{variant}", f"{variant}-run")
    assert rows.filter(metric="loss")["flops"].to_list()[-1] > 0  # pretraining FLOPs from the counter



def test_label_efficiency_panel_plots_ap_per_fraction_and_flops_per_method(tmp_path):
    import polars as pl

    from orchestrator.report.panels.label_efficiency import (
        curves,
        label_efficiency_section,
    )
    from orchestrator.report.registry import PanelContext

    rows = []
    for method, base in (("ad_l_jepa", 0.5), ("occupancy_mae", 0.3)):
        for seed in (0, 1):
            row = {"run_id": f"{method}-{seed}", "variant.name": method, "seed": seed, "flops_total": 1e12 if method == "ad_l_jepa" else 2e12}
            for pct in (5, 20, 100):
                row.update({f"bev_ap_{pct}": base + pct / 1000 + seed / 100, f"bev_ap_{pct}/random_init": 0.1, f"bev_ap_{pct}/raw_input": 0.2})
            rows.append(row)
    finished = pl.DataFrame(rows)
    data = curves(finished, "bev_ap", "variant.name")
    assert [p for p, *_ in data["ad_l_jepa"]] == [5, 20, 100]
    assert data["ad_l_jepa"][2][1] == pytest.approx(0.6 + 0.005) and data["no pretraining (random init)"][0][1] == pytest.approx(0.1)

    class NoMetrics:
        def metrics(self, sweep):
            return pl.DataFrame()

    ctx = PanelContext(str(tmp_path), "adl", finished, "flops_total", "bev_ap_100", "variant.name", {}, NoMetrics())
    text = "\n".join(label_efficiency_section.render(ctx, {"metrics": ["bev_ap"]}))
    assert (tmp_path / "label_efficiency_bev_ap.png").is_file()
    assert "| ad_l_jepa | 2 |" in text and "| occupancy_mae | 2 |" in text  # the FLOPs table, n = 2 seeds
    assert "0.605 ± 0.005" in text  # AP at 100 % labels: mean ± s.e. over the two seeds


# ------------------------------------------------------------------------- lidar_kitti: the user's KITTI-style files
KITTI_NAMES = {0: "Car", 1: "Pedestrian", 2: "Cyclist"}


def kitti_label_lines(boxes: np.ndarray) -> str:
    """The inverse of `read_labels`' fixed frame conversion: objects as KITTI label lines, clutter as DontCare."""
    lines = []
    for kind, x, y, z, length, width, height, yaw in boxes:
        if int(kind) in KITTI_NAMES:
            lines.append(f"{KITTI_NAMES[int(kind)]} 0.00 0 0.00 0 0 100 100 {height:.6f} {width:.6f} {length:.6f} "
                         f"{-y:.6f} {height / 2 - z:.6f} {x:.6f} {-yaw - math.pi / 2:.6f}")
        else:
            lines.append("DontCare -1 -1 -10 0 0 1 1 -1 -1 -1 -1000 -1000 -1000 -10")
    return "\n".join(lines) + "\n"


def write_kitti(root, count: int = 6) -> list:
    """`count` generated scenes as a KITTI object directory (velodyne/, label_2/); returns the scenes."""
    (root / "velodyne").mkdir(parents=True)
    (root / "label_2").mkdir()
    scenes = [lidar.make_scene(np.random.default_rng(i), GRID, lidar.Lidar(azimuths=180)) for i in range(count)]
    for i, scene in enumerate(scenes):
        lidar.write_bin(root / "velodyne" / f"{i:06d}.bin", scene.points)
        (root / "label_2" / f"{i:06d}.txt").write_text(kitti_label_lines(scene.boxes))
    return scenes


def kitti_cfg(path, cache, **extra):
    from omegaconf import OmegaConf

    from orchestrator.lidar_data import LidarKittiData

    return OmegaConf.structured(LidarKittiData(path=str(path), root=str(cache), **extra))


def test_lidar_kitti_serves_what_the_generated_path_makes_from_the_same_scenes(tmp_path):
    from omegaconf import OmegaConf

    from orchestrator.lidar_data import LidarScenesData, kitti_boxes, load_kitti, spec
    from orchestrator.registry import check_data, dataset

    scenes = write_kitti(tmp_path / "kitti")
    cfg = kitti_cfg(tmp_path / "kitti", tmp_path / "cache")
    check_data(cfg)
    entry = dataset("lidar_kitti")
    assert entry.spec(cfg) == spec(OmegaConf.structured(LidarScenesData()))  # same grid: same variants and evaluation
    train, val = load_kitti(cfg, "train"), load_kitti(cfg, "val")
    assert (len(train), len(val)) == (5, 1)  # the sorted ids' tail (round(6 × 0.2) = 1) is val
    for i, sample in [(i, train[i]) for i in range(5)] + [(5, val[0])]:
        want = lidar.sample_arrays(scenes[i].boxes, scenes[i].points, GRID)
        assert torch.equal(sample["bev"], torch.from_numpy(want["bev"]))
        assert torch.equal(sample["occupancy"], torch.from_numpy(want["occupancy"]).flatten())
        assert np.allclose(sample["boxes"].numpy(), want["boxes"], atol=1e-4)
    assert int((train[0]["boxes"][:, 0] >= 0).sum()) > 0
    # ImageSets/ decides the split instead; calib/ moves boxes by the frame's own transform (here 0.27 m along x)
    (tmp_path / "kitti" / "ImageSets").mkdir()
    (tmp_path / "kitti" / "ImageSets" / "train.txt").write_text("000000\n000002\n000004\n")
    (tmp_path / "kitti" / "ImageSets" / "val.txt").write_text("000001\n000003\n")
    assert (len(load_kitti(cfg, "train")), len(load_kitti(cfg, "val"))) == (3, 2)
    assert torch.equal(load_kitti(cfg, "val")[1]["bev"], torch.from_numpy(lidar.sample_arrays(scenes[3].boxes, scenes[3].points, GRID)["bev"]))
    (tmp_path / "kitti" / "calib").mkdir()
    (tmp_path / "kitti" / "calib" / "000000.txt").write_text(
        "P2: 1 0 0 0 0 1 0 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 -0.27\n")
    base = tmp_path / "kitti"
    plain, moved = lidar.read_labels(base / "label_2" / "000000.txt"), kitti_boxes(base, "000000", 0.0)
    assert np.allclose(moved[:, 1], plain[:, 1] + 0.27) and np.allclose(moved[:, 2:], plain[:, 2:])


def _missing_dir(root):
    return root / "nowhere", r"nowhere.*not a directory.*Fix"


def _no_bins(root):
    for f in (root / "velodyne").glob("*.bin"):
        f.unlink()
    return root, r"velodyne: no \.bin files.*Fix"


def _bad_size(root):
    (root / "velodyne" / "000002.bin").write_bytes(b"\0" * 17)
    return root, r"000002\.bin: 17 bytes is not a positive multiple of 16.*Fix"


def _unknown_class(root):
    (root / "label_2" / "000001.txt").write_text("Spaceship 0 0 0 0 0 1 1 1.5 1.8 4.2 -2.0 0.75 6.0 0.0\n")
    return root, r"000001\.txt:1: unknown label class 'Spaceship'.*Fix"


def _listed_id_missing(root):
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("000000\n000009\n")
    (root / "ImageSets" / "val.txt").write_text("000001\n")
    return root, r"000009\.bin: no such file \(scene '000009' of the train split\).*Fix"


@pytest.mark.parametrize("spoil", [_missing_dir, _no_bins, _bad_size, _unknown_class, _listed_id_missing])
def test_lidar_kitti_bad_files_are_errors_naming_the_file(tmp_path, spoil):
    from orchestrator.datasets import DataError
    from orchestrator.registry import check_data

    write_kitti(tmp_path / "kitti", count=3)
    path, message = spoil(tmp_path / "kitti")
    with pytest.raises(DataError, match=message):
        check_data(kitti_cfg(path, tmp_path / "cache"))


def test_lidar_kitti_trains_and_scores_detection_through_the_loop(ray_session, tmp_path):
    from orchestrator.config import compose_run
    from orchestrator.train import launch

    write_kitti(tmp_path / "kitti")
    cfg = compose_run(["variant=ad_l_jepa", "data=lidar_kitti", f"data.path={tmp_path / 'kitti'}", "model=cnn",
                       "model.strides=[1,1]", "model.channels=[8,16]", f"storage={tmp_path}", "budget.steps=2",
                       "train.batch_size=2", "train.log_every=1", "eval.epochs=1", "eval.baselines=false", "eval.kinds=[bev_detection]",
                       "sweep=adl_kitti"])
    metrics = launch(cfg, "kitti-run")
    assert metrics["step"] == 2 and metrics["final"] and math.isfinite(metrics["loss"])
    assert all(0.0 <= metrics[f"bev_ap_{pct}"] <= 1.0 for pct in (5, 20, 100))
