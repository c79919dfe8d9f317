"""SALT: frozen teacher, FLOP split between stages, pixel targets, and a tiny two-stage run (no Ray)."""
import pytest
import torch

from orchestrator.budget import measure_step_flops, plan_run
from orchestrator.config import ConfigError, compose_run, to_plain
from orchestrator.results import ResultsStore
from orchestrator.train import train_loop
from tests.conftest import tiny_overrides
from variants.base import DataSpec
from variants.nn.masks import MaskPair
from variants.nn.vit import TokenGrid, VideoViT
from variants.salt import SALT, normalize_patches, patchify

SPEC = DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4})  # 4×4×4 = 64 tokens of 2×8×8
SALT_TINY = [
    "variant.teacher_model=vit_tiny",
    "variant.teacher_depth=1",
    "variant.teacher_dim=32",
    "variant.teacher_heads=2",
    "variant.decoder_dim=32",
    "variant.decoder_depth=1",
    "variant.decoder_heads=2",
]


def salt_cfg(tmp_path, *extra, budget="budget.steps=4"):
    data_root = str(tmp_path / "data")  # composing never touches the data
    return compose_run(["variant=salt", *tiny_overrides(tmp_path, data_root), *SALT_TINY, budget, *extra])


def clips(seed=0, batch=4):
    return torch.rand(batch, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed))


def student_modules(variant):
    return variant.build("student", variant.build("teacher"))


def loss_with_masks(variant, modules, video, stage, mask_seed=123):
    """The step's loss with the mask stream reseeded, so two calls draw the same masks."""
    variant.reseed(mask_seed)
    with torch.no_grad():
        return variant.step(modules, {"video": video}, stage)["loss"]


# --- student stage ----------------------------------------------------------------------
def test_teacher_is_frozen_during_student_steps(tmp_path):
    variant = SALT(salt_cfg(tmp_path), SPEC)
    teacher_stage = variant.build("teacher")
    modules = variant.build("student", teacher_stage)
    assert variant.trainable(modules, "student") == ["student", "predictor"]
    assert modules["teacher"] is not teacher_stage["teacher"]  # a frozen copy, not the trained module
    teacher_before = {k: v.clone() for k, v in modules["teacher"].state_dict().items()}
    student_before = {k: v.clone() for k, v in modules["student"].state_dict().items()}
    optimizer = torch.optim.AdamW(variant.param_groups(modules, "student"), lr=1e-2, weight_decay=0.05)
    for step in range(3):
        modules.train()  # what the trainer's probe leaves behind
        loss = variant.step(modules, {"video": clips(step)}, "student")["loss"]
        assert not modules["teacher"].training
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        variant.after_step(modules, step + 1, 3, "student")
    for name, value in modules["teacher"].state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    assert all(not p.requires_grad and p.grad is None for p in modules["teacher"].parameters())
    assert any(not torch.equal(v, student_before[k]) for k, v in modules["student"].state_dict().items())


def test_student_targets_come_from_the_teacher(tmp_path):
    variant = SALT(salt_cfg(tmp_path), SPEC)
    modules = student_modules(variant)
    video = clips()
    loss = loss_with_masks(variant, modules, video, "student")
    assert torch.equal(loss, loss_with_masks(variant, modules, video, "student"))  # same masks, same loss
    targets = SALT.teacher_targets(modules["teacher"], video)
    assert targets.shape == (4, 64, 32) and not targets.requires_grad

    torch.manual_seed(1)
    modules["teacher"].load_state_dict(variant.build("teacher")["teacher"].state_dict())  # another teacher
    assert not torch.allclose(SALT.teacher_targets(modules["teacher"], video), targets)
    assert not torch.allclose(loss_with_masks(variant, modules, video, "student"), loss)


def test_student_clip_variance_weight_adds_its_penalty(tmp_path):
    """The student's within-clip variance hinge is logged with weight 0 and added to the loss with a weight."""
    outs = []
    for weight in (0.0, 3.0):
        torch.manual_seed(0)
        variant = SALT(salt_cfg(tmp_path, f"variant.clip_variance_weight={weight}", "variant.clip_variance_floor=1.0"), SPEC)
        modules = student_modules(variant)
        variant.reseed(123)
        with torch.no_grad():
            outs.append(variant.step(modules, {"video": clips()}, "student"))
    off, on = outs
    assert 0.0 < float(off["loss_clip_variance"]) < 1.0
    assert float(on["loss"]) == pytest.approx(float(off["loss"]) + 3.0 * float(off["loss_clip_variance"]), rel=1e-5)


def test_student_stage_without_a_teacher_fails_clearly(tmp_path):
    variant = SALT(salt_cfg(tmp_path), SPEC)
    with pytest.raises(ValueError, match="teacher_fraction") as err:
        variant.build("student", None)
    assert "'student'" in str(err.value)


def test_features_use_the_student_once_it_exists(tmp_path):
    variant = SALT(salt_cfg(tmp_path), SPEC)
    batch = {"video": clips()}
    assert variant.features(variant.build("teacher"), batch).shape == (4, 64, 32)  # teacher width
    assert variant.features(student_modules(variant), batch).shape == (4, 64, 64)  # model.dim


# --- FLOPs ------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.1, 0.4])
def test_flop_split_follows_teacher_fraction(tmp_path, fraction):
    budget = 2e12
    cfg = salt_cfg(tmp_path, f"variant.teacher_fraction={fraction}", budget=f"budget.flops={budget}")
    plans = plan_run(SALT, cfg, SPEC)
    assert [p.stage for p in plans] == ["teacher", "student"]
    assert min(p.steps for p in plans) >= 50  # enough steps that rounding is negligible
    total = sum(p.flops for p in plans)
    assert total <= budget
    assert plans[0].flops / total == pytest.approx(fraction, rel=0.05)


def test_student_step_is_charged_for_the_frozen_teacher_forward(tmp_path):
    def student_flops(teacher_depth):
        cfg = salt_cfg(tmp_path, f"variant.teacher_depth={teacher_depth}")
        variant = SALT(cfg, SPEC)
        return measure_step_flops(SALT, cfg, SPEC, "student", 8, variant.build("teacher"))

    assert student_flops(3) > student_flops(1)


# --- teacher stage ----------------------------------------------------------------------
def test_patchify_follows_the_conv3d_token_order():
    grid = TokenGrid(frames=4, size=12, patch=3, tubelet=2)
    embed = VideoViT(grid, dim=8, depth=0, heads=2).patch_embed
    video = torch.randn(2, 3, 4, 12, 12)
    patches = patchify(video, tubelet=2, patch=3)
    assert patches.shape == (2, grid.num_tokens, 3 * 2 * 3 * 3)
    expected = embed(video).flatten(2).transpose(1, 2)
    torch.testing.assert_close(patches @ embed.weight.flatten(1).T + embed.bias, expected, rtol=1e-5, atol=1e-5)


def test_pixel_targets_are_normalised_per_patch():
    patches = torch.randn(2, 5, 48) * 3 + 7
    patches[0, 0] = 0.5  # a flat patch must not become NaN
    normed = normalize_patches(patches)
    assert torch.isfinite(normed).all() and torch.equal(normed[0, 0], torch.zeros(48))
    torch.testing.assert_close(normed[1].mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed[1].std(-1, correction=0), torch.ones(5), atol=1e-4, rtol=0)


class FixedMasks:
    """Context = first temporal slice, target = second; slices 3-4 are neither."""

    def __call__(self, batch_size, generator):
        context, target = torch.arange(0, 16), torch.arange(16, 32)
        return MaskPair(context.expand(batch_size, -1), target.expand(batch_size, -1))


def test_pixel_loss_is_on_masked_tubelets_only(tmp_path):
    variant = SALT(salt_cfg(tmp_path), SPEC)
    variant.maskers = [FixedMasks(), FixedMasks()]
    modules = variant.build("teacher")
    video = clips()
    loss = loss_with_masks(variant, modules, video, "teacher")
    unused = video.clone()
    unused[:, :, 4:] = torch.rand_like(unused[:, :, 4:])  # frames 4-7: tubelets neither seen nor predicted
    assert torch.equal(loss_with_masks(variant, modules, unused, "teacher"), loss)
    masked = video.clone()
    masked[:, :, 2:4] = torch.rand_like(masked[:, :, 2:4])  # frames 2-3: the masked (target) tubelets
    assert not torch.allclose(loss_with_masks(variant, modules, masked, "teacher"), loss)


# --- whole run and config ---------------------------------------------------------------
def test_tiny_run_trains_teacher_then_student(tmp_path, data_root):
    cfg = compose_run(["variant=salt", *tiny_overrides(tmp_path, data_root), *SALT_TINY, "budget.steps=4", "sweep=salt"])
    metrics = train_loop({"config": to_plain(cfg), "run_id": "salt-tiny", "session": "local"})
    assert metrics["stage"] == "student" and metrics["final"]
    assert 0.0 <= metrics["probe_acc"] <= 1.0
    rows = ResultsStore(tmp_path).metrics("salt", "salt-tiny")
    names = set(rows["metric"].to_list())
    assert {"teacher/loss", "teacher/loss_short", "loss", "probe_acc"} <= names
    assert "teacher/probe_acc" in names  # each stage is probed at its end (teacher quality vs student quality)
    teacher_flops = rows.filter(metric="teacher/loss")["flops"].max()
    assert teacher_flops < rows.filter(metric="loss")["flops"].min()


def test_teacher_fraction_outside_zero_one_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="variant.teacher_fraction"):
        salt_cfg(tmp_path, "variant.teacher_fraction=1.5")
    with pytest.raises(ConfigError, match="variant.teacher_heads"):
        salt_cfg(tmp_path, "variant.teacher_heads=5")


def test_teacher_saved_by_one_run_is_reused_by_another(tmp_path, data_root):
    """train.stages=[teacher] trains and saves a teacher; a student run reuses it and inherits its cost."""
    teacher_cfg = salt_cfg(tmp_path, "train.stages=[teacher]", "sweep=teachers")
    out = train_loop({"config": to_plain(teacher_cfg), "run_id": "t0", "session": "local"})
    assert out["stage"] == "teacher" and 0.0 <= out["probe_acc"] <= 1.0
    (path,) = ResultsStore(tmp_path).artifacts("teachers", "teacher.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["flops"] == pytest.approx(out["flops_total"]) and "probe_acc" in saved["metrics"]

    student_cfg = salt_cfg(tmp_path, f"variant.teacher_checkpoint={path}", "sweep=students")
    variant = SALT(student_cfg, DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4}))
    assert variant.stages == ("student",) and variant.inherited["teacher_flops"] == saved["flops"]
    assert variant.inherited["teacher/probe_acc"] == saved["metrics"]["probe_acc"]
    modules = variant.build("student")
    teacher_weights = {k: v for k, v in saved["modules"].items() if k.startswith("teacher.")}
    for name, value in modules["teacher"].state_dict().items():
        assert torch.equal(value, teacher_weights[f"teacher.{name}"])
    result = train_loop({"config": to_plain(student_cfg), "run_id": "s0", "session": "local"})
    assert result["stage"] == "student" and result["teacher_flops"] == saved["flops"]
    (student_plan,) = plan_run(SALT, student_cfg, SPEC)
    assert result["flops_total"] == pytest.approx(student_plan.flops)  # its own FLOPs; the teacher's are inherited


def test_student_only_stage_without_a_teacher_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.stages.*add teacher"):
        salt_cfg(tmp_path, "train.stages=[student]")


def test_missing_reused_teacher_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match="variant.teacher_checkpoint.*does not exist.*teacher sweep first"):
        salt_cfg(tmp_path, f"variant.teacher_checkpoint={tmp_path}/absent/teacher.pt")


def test_sweep_over_teachers_of_a_sweep_that_never_ran_fails_clearly(tmp_path):
    from orchestrator.sweep import SweepError, load_sweep

    sweep_file = tmp_path / "students.yaml"
    sweep_file.write_text("name: students\nbase: {variant: salt, budget.steps: 2}\n"
                          "space: {variant.teacher_checkpoint: {stages_of: [salt_teachers, teacher]}}\n")
    with pytest.raises(SweepError, match="run that sweep first"):
        load_sweep(sweep_file, [f"storage={tmp_path}"])


def test_teacher_stage_runs_at_its_own_learning_rate(tmp_path):
    """teacher_lr_scale multiplies the teacher's scheduled lr and leaves the student's alone."""
    from orchestrator.optim import make_optimizer, set_schedules

    cfg = salt_cfg(tmp_path, "variant.teacher_lr_scale=0.1", "optim.lr=1e-3", "optim.warmup_frac=0.0")
    variant = SALT(cfg, SPEC)
    teacher = variant.build("teacher")
    lr_of = {}
    for stage, modules in (("teacher", teacher), ("student", variant.build("student", teacher))):
        optimizer = make_optimizer(variant, modules, stage, cfg)
        base = set_schedules(optimizer, cfg, 0, 10)
        lr_of[stage] = sorted(round(group["lr"] / base, 9) for group in optimizer.param_groups)
    assert lr_of == {"teacher": [0.1, 0.1], "student": [1.0, 1.0]}


def test_teacher_lr_scale_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="variant.teacher_lr_scale"):
        salt_cfg(tmp_path, "variant.teacher_lr_scale=0")
