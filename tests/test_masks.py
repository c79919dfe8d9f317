import torch

from variants.nn.masks import LONG_RANGE, SHORT_RANGE, BlockSpec, MultiBlockMasker, mask_ratio

GRID = (4, 8, 8)


def draw(spec, seed=0, batch=6):
    return MultiBlockMasker(GRID, spec)(batch, torch.Generator().manual_seed(seed))


def test_context_and_target_are_disjoint_and_cover_in_range():
    masks = draw(SHORT_RANGE)
    n = 4 * 8 * 8
    assert masks.context.shape[0] == masks.target.shape[0] == 6
    for ctx, tgt in zip(masks.context, masks.target):
        assert not set(ctx.tolist()) & set(tgt.tolist())
        assert ctx.max() < n and tgt.max() < n
        assert len(set(tgt.tolist())) == len(tgt)


def test_mask_ratios_match_vjepa_families():
    n = 4 * 8 * 8
    short = [mask_ratio(draw(SHORT_RANGE, seed), n) for seed in range(20)]
    long = [mask_ratio(draw(LONG_RANGE, seed), n) for seed in range(20)]
    # 8 blocks of 15% overlap to roughly 50-80% masked; 2 blocks of 70% to 70-100%
    assert 0.35 < sum(short) / 20 < 0.85
    assert 0.65 < sum(long) / 20 <= 1.0
    assert sum(long) / 20 > sum(short) / 20


def test_masks_are_tubes_over_time():
    masks = draw(BlockSpec(num_blocks=1, spatial_scale=(0.2, 0.2)), batch=1)
    tgt = masks.target[0].view(-1)
    t = tgt // 64
    hw = tgt % 64
    for frame in range(4):
        assert set(hw[t == frame].tolist()) == set(hw[t == 0].tolist())


def test_masks_are_deterministic_per_seed():
    a, b, c = draw(SHORT_RANGE, 3), draw(SHORT_RANGE, 3), draw(SHORT_RANGE, 4)
    assert torch.equal(a.target, b.target) and torch.equal(a.context, b.context)
    assert not torch.equal(a.target, c.target) or not torch.equal(a.context, c.context)


def test_context_never_empty():
    masks = draw(BlockSpec(num_blocks=4, spatial_scale=(1.0, 1.0)), batch=3)
    assert masks.context.shape[1] >= 1
