import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from orchestrator.budget import BudgetError, measure_step_flops, plan_run, plan_stage
from orchestrator.config import compose_run
from variants.base import DataSpec
from variants.nn.vit import VIT_SIZES, TokenGrid, VideoViT, vit_forward_flops
from variants.vjepa import VJEPA


@pytest.mark.parametrize("size", ["vit_tiny", "vit_base", "vit_large"])
def test_flop_counter_matches_analytic_vit(size):
    dim, depth, heads = VIT_SIZES[size]
    grid = TokenGrid(frames=16, size=224, patch=16, tubelet=2)
    with torch.device("meta"):
        model = VideoViT(grid, dim, depth, heads)
        clip = torch.empty(1, 3, 16, 224, 224)
    with FlopCounterMode(display=False) as counter:
        model(clip)
    analytic = vit_forward_flops(grid.num_tokens, dim, depth, patch_volume=2 * 16 * 16)
    assert abs(counter.get_total_flops() - analytic) / analytic < 0.10


def test_backward_counts_twice_forward_for_trainable_only():
    grid = TokenGrid(frames=8, size=32, patch=8, tubelet=2)
    with torch.device("meta"):
        model = VideoViT(grid, 64, 2, 2)
        clip = torch.empty(4, 3, 8, 32, 32)
    with FlopCounterMode(display=False) as fwd:
        model(clip)
    with FlopCounterMode(display=False) as both:
        model(clip).sum().backward()
    ratio = both.get_total_flops() / fwd.get_total_flops()
    assert 2.6 < ratio < 3.1  # the input has no grad, so the patch embedding skips its input grad
    model.requires_grad_(False)
    with FlopCounterMode(display=False) as frozen:
        model(clip).sum()
    assert frozen.get_total_flops() == fwd.get_total_flops()


def test_vjepa_step_flops_scale_with_batch_and_workers():
    cfg = compose_run(["budget.steps=10", "model.depth=2", "train.num_workers=2"])
    spec = DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4})
    f8 = measure_step_flops(VJEPA, cfg, spec, "main", 8)
    f16 = measure_step_flops(VJEPA, cfg, spec, "main", 16)
    assert f16 == pytest.approx(2 * f8, rel=0.05)  # the same traced mask draws at both sizes
    plans = plan_run(VJEPA, cfg, spec)
    assert plans[0].steps == 10
    assert plans[0].flops_per_step == pytest.approx(2 * measure_step_flops(VJEPA, cfg, spec, "main", 16), rel=1e-9)
    other_seed = compose_run(["budget.steps=10", "model.depth=2", "train.num_workers=2", "seed=5"])
    assert plan_run(VJEPA, other_seed, spec)[0].flops_per_step == plans[0].flops_per_step  # the charge ignores the seed


def test_flop_budget_sets_steps_and_too_small_budget_is_explained():
    plan = plan_stage("main", 1e9, 1.0, budget_flops=1e11, budget_steps=None)
    assert plan.steps == 100 and plan.flops == pytest.approx(1e11)
    assert plan_stage("main", 1e9, 1.0, budget_flops=1e11, budget_steps=7).steps == 7
    with pytest.raises(BudgetError, match="budget.flops"):
        plan_stage("main", 1e9, 1.0, budget_flops=1e8, budget_steps=None)
