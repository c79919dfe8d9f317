"""Issue 14's instruments: the collapse detector, an EMA sized to the run, masks that keep context,
and a V-JEPA run that logs them all. No Ray: the loop runs bare."""
import pytest
import torch

from orchestrator.config import ConfigError, compose_run, to_plain
from orchestrator.evaluate import registry
from orchestrator.evaluate.base import Features
from orchestrator.evaluate.feature_stats import collapse_warning
from orchestrator.results import ResultsStore
from orchestrator.train import train_loop
from tests.conftest import tiny_overrides
from variants.base import DataSpec
from variants.nn.ema import ema_start_for_half_life, initial_weight_share, momentum_at
from variants.nn.masks import LONG_RANGE, SHORT_RANGE, MultiBlockMasker
from variants.nn.vit import TokenGrid, VideoViT
from variants.vjepa import VJEPA, centre_targets, clip_variance_penalty, variance_shares

SPEC = DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4})


def cfg_for(tmp_path, *extra):
    return compose_run([*tiny_overrides(tmp_path, str(tmp_path / "data")), "budget.steps=4", *extra])


# --- collapse detector ------------------------------------------------------------------------
def stats(tokens: torch.Tensor, tmp_path) -> dict[str, float]:
    feats = Features(tokens)
    return registry.evaluation("feature_stats").score(feats, feats, SPEC, cfg_for(tmp_path))


@pytest.fixture(scope="module")
def random_tokens() -> torch.Tensor:
    """A random-init VideoViT's tokens on random clips: [64 clips, 64 tokens, 64 dims]."""
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder = VideoViT(TokenGrid(frames=8, size=32, patch=8, tubelet=2), dim=64, depth=2, heads=2).eval()
    with torch.no_grad():
        return encoder(torch.rand(64, 3, 8, 32, 32, generator=gen))


def test_collapse_detector_fires_on_a_constant_encoder(random_tokens, tmp_path):
    constant = random_tokens[:1, :1].expand_as(random_tokens).contiguous()
    out = stats(constant, tmp_path)
    assert out["feature_collapsed"] == 1.0 and out["feature_rank"] == 0.0 and out["feature_var"] < 1e-9
    ignores_input = random_tokens[:1].expand_as(random_tokens).contiguous()  # varies with position only
    assert stats(ignores_input, tmp_path)["feature_collapsed"] == 1.0


def test_collapse_detector_stays_quiet_on_a_random_encoder(random_tokens, tmp_path):
    out = stats(random_tokens, tmp_path)
    assert out["feature_collapsed"] == 0.0
    assert out["feature_rank"] > 0.25 * random_tokens.shape[-1] and out["feature_var"] > 0.1
    gaussian = torch.randn(256, 16, 32, generator=torch.Generator().manual_seed(1))
    assert stats(gaussian, tmp_path)["feature_rank"] == pytest.approx(32, rel=0.1)  # isotropic: every direction


def test_collapse_warning_names_the_run_and_the_fixes(tmp_path):
    cfg = cfg_for(tmp_path)
    assert collapse_warning({"feature_collapsed": 0.0, "feature_rank": 30.0}, cfg, "r1", "main") is None
    line = collapse_warning({"feature_collapsed": 1.0, "feature_rank": 1.5, "step": 7}, cfg, "r1", "teacher")
    assert "'r1'" in line and "'teacher'" in line and "1.50" in line and "optim.lr" in line and "optim.grad_clip" in line


# --- EMA sized to the run ---------------------------------------------------------------------
@pytest.mark.parametrize("total", [100, 1000, 10_000, 100_000])
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25])
def test_target_half_life_is_the_configured_fraction_of_the_run(total, fraction):
    start = ema_start_for_half_life(total, fraction)
    share, crossed = 1.0, None
    for step in range(1, total + 1):
        share *= momentum_at(step, total, start, 1.0)  # what ema_update does to the initial weights
        if crossed is None and share <= 0.5:
            crossed, share_then = step, share
    assert abs(crossed - round(fraction * total)) <= 1
    assert initial_weight_share(crossed, total, start) == pytest.approx(share_then, rel=1e-9)
    assert initial_weight_share(total, total, start) == pytest.approx(share, rel=1e-9)


def test_vjepa_target_keeps_the_predicted_share_of_its_init(tmp_path):
    """Through the variant: online weights 0, target weights 1, so the target holds exactly its init share."""
    cfg = cfg_for(tmp_path, "variant.ema_half_life=0.25")
    variant = VJEPA(cfg, SPEC)
    modules = variant.build("main")
    with torch.no_grad():
        for p in modules["encoder"].parameters():
            p.zero_()
        for p in modules["target_encoder"].parameters():
            p.fill_(1.0)
    total = 40
    for step in range(1, 11):
        variant.after_step(modules, step, total, "main")
    diag = variant.diagnostics(modules, "main")
    kept = next(modules["target_encoder"].parameters()).flatten()[0].item()
    assert diag["ema_init_share"] == pytest.approx(kept, rel=1e-5) and diag["ema_init_share"] == pytest.approx(0.5, abs=0.02)
    assert diag["ema_momentum"] == pytest.approx(momentum_at(10, total, variant.ema_start(total)))
    assert diag["ema_drift"] > 0


def test_paper_ema_start_is_one_override_away(tmp_path):
    variant = VJEPA(cfg_for(tmp_path, "variant.ema_start=0.998"), SPEC)
    assert variant.ema_start(256) == 0.998
    assert initial_weight_share(256, 256, 0.998) == pytest.approx(0.77, abs=0.01)  # the measurement


@pytest.mark.parametrize("override, key", [("variant.ema_half_life=1.5", "variant.ema_half_life"),
                                           ("variant.ema_half_life=0", "variant.ema_half_life"),
                                           ("variant.ema_start=1.2", "variant.ema_start"),
                                           ("variant.min_context=0", "variant.min_context"),
                                           ("variant.min_context=64", "variant.min_context"),
                                           ("variant.clip_variance_weight=-1", "variant.clip_variance_weight"),
                                           ("variant.clip_variance_floor=0", "variant.clip_variance_floor"),
                                           ("eval.collapse_rank_frac=1.5", "eval.collapse_rank_frac")])
def test_instrument_settings_out_of_range_are_config_errors(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cfg_for(tmp_path, override)


# --- masks keep context -----------------------------------------------------------------------
@pytest.mark.parametrize("family", [SHORT_RANGE, LONG_RANGE], ids=["short", "long"])
def test_masks_keep_min_context_on_the_default_grid(tmp_path, family):
    variant = VJEPA(cfg_for(tmp_path), SPEC)
    assert variant.grid.shape == (4, 4, 4)
    min_context = int(variant.cfg.variant.min_context)
    masker = MultiBlockMasker(variant.grid.shape, family, min_context)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        pair = masker(8, gen)
        assert pair.context.shape[1] >= min_context and pair.target.shape[1] >= 1
    widths = [m(8, gen).context.shape[1] for m in variant.maskers for _ in range(50)]
    assert min(widths) >= min_context  # the variant's own maskers carry the setting


# --- a run logs them --------------------------------------------------------------------------
def test_tiny_vjepa_run_logs_the_instruments(tmp_path, data_root, capsys):
    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=4", "sweep=instruments",
                                                               "eval.collapse_rank_frac=0.99"])
    metrics = train_loop({"config": to_plain(cfg), "run_id": "inst", "session": "local"})
    rows = ResultsStore(tmp_path).metrics("instruments", "inst")
    names = set(rows["metric"].to_list())
    assert {"ema_momentum", "ema_init_share", "ema_drift", "tokens_context", "tokens_target", "target_position_share", "target_clip_share", "target_static_share",
            "feature_rank", "feature_var", "feature_collapsed", "feature_rank/random_init"} <= names
    assert rows.filter(metric="ema_init_share")["step"].to_list() == [2, 4]  # every log step
    assert 0.0 < metrics["ema_drift"] and 0.0 <= metrics["ema_init_share"] < 1.0
    assert metrics["tokens_context"] >= 8 and metrics["tokens_context"] + metrics["tokens_target"] <= 64
    assert metrics["feature_collapsed"] == 1.0  # 0.99 of the width: nothing real reaches it
    assert "features collapsed" in capsys.readouterr().err


@pytest.mark.parametrize(("which", "module"), [("target", "target_encoder"), ("online", "encoder")])
def test_probes_read_the_chosen_vjepa_encoder(tmp_path, which, module):
    cfg = cfg_for(tmp_path, f"variant.probe_encoder={which}")
    variant = VJEPA(cfg, DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4}))
    modules = variant.build("main")
    with torch.no_grad():
        modules["encoder"].patch_embed.weight.add_(1.0)  # online and target now differ
        video = torch.rand(2, 3, 8, 32, 32)
        assert torch.equal(variant.features(modules, {"video": video}), modules[module](video))


def test_probe_encoder_both_scores_the_online_encoder_as_a_second_view(tmp_path):
    cfg = cfg_for(tmp_path, "variant.probe_encoder=both")
    variant = VJEPA(cfg, DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4}))
    modules = variant.build("main")
    with torch.no_grad():
        modules["encoder"].patch_embed.weight.add_(1.0)  # online and target now differ
        video = torch.rand(2, 3, 8, 32, 32)
        assert torch.equal(variant.features(modules, {"video": video}), modules["target_encoder"](video))
        views = variant.extra_features(modules)
        assert list(views) == ["online"]
        assert torch.equal(views["online"]({"video": video}), modules["encoder"](video))


def test_tiny_run_probing_both_encoders_logs_online_metrics(tmp_path, data_root):
    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=2", "sweep=both", "variant.probe_encoder=both"])
    metrics = train_loop({"config": to_plain(cfg), "run_id": "both", "session": "local"})
    assert {"probe_acc", "online/probe_acc", "online/probe_acc_shape", "probe_acc/random_init"} <= set(metrics)
    assert not any(k.startswith("online/") and k.endswith(("/random_init", "/raw_input")) for k in metrics)


def test_an_end_momentum_below_one_needs_an_explicit_start(tmp_path):
    with pytest.raises(ConfigError, match=r"variant\.ema_end.*variant\.ema_start"):
        cfg_for(tmp_path, "variant.ema_end=0.99")
    cfg_for(tmp_path, "variant.ema_end=0.99", "variant.ema_start=0.9")  # explicit: fine


def test_unknown_probe_encoder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="variant.probe_encoder"):
        cfg_for(tmp_path, "variant.probe_encoder=student")


def test_mask_blocks_span_the_configured_share_of_time(tmp_path):
    """The paper's tubes (1.0) mask a position at all 4 time tokens or none; blocks over half the
    time (0.5) leave positions masked at 2 times and visible at the others."""
    spec = DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4})
    gen = torch.Generator().manual_seed(0)
    for scale in (0.5, 1.0):
        variant = VJEPA(cfg_for(tmp_path, f"variant.mask_temporal_scale={scale}", "variant.min_context=1"), spec)
        for masker in variant.maskers:
            counts = set()
            for _ in range(20):
                masked = torch.zeros(masker.grid).flatten().bool()
                masked[masker(1, gen).target[0]] = True
                counts |= set(masked.view(masker.grid).sum(0).flatten().tolist())  # times each (h, w) is masked
            # (3: the one token min_context=1 unmasks when a long-range mask covers everything)
            assert not counts & {1, 2} if scale == 1.0 else 2 in counts, (scale, counts)


def test_unknown_target_centring_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"variant.target_centring.*none, position, clip"):
        cfg_for(tmp_path, "variant.target_centring=batch")


def test_mask_temporal_scale_out_of_range_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="variant.mask_temporal_scale"):
        cfg_for(tmp_path, "variant.mask_temporal_scale=0")


# --- the positional shortcut ------------------------------------------------------------------
def position_share(tokens):
    return float(variance_shares(tokens)["target_position_share"])


def test_variance_shares_tell_where_and_which_clip_from_what():
    """Targets that are their position embedding score ~1 on position; a per-clip constant ~1 on clip;
    content independent of both ~1/B and ~1/N."""
    gen = torch.Generator().manual_seed(0)
    where = torch.randn(1, 64, 32, generator=gen).expand(16, -1, -1)
    which = torch.randn(16, 1, 32, generator=gen).expand(-1, 64, -1)
    what = torch.randn(16, 64, 32, generator=gen)
    assert position_share(where + 0.01 * what) > 0.99
    assert position_share(what) < 2 / 16 and float(variance_shares(what)["target_clip_share"]) < 2 / 64
    assert 0.4 < position_share(where + what) < 0.6
    assert float(variance_shares(which + 0.01 * what)["target_clip_share"]) > 0.99
    still = torch.randn(16, 1, 16, 32, generator=gen).expand(-1, 4, -1, -1).flatten(1, 2)  # 4 time tokens x 16 places
    assert float(variance_shares(still + 0.01 * what, time_tokens=4)["target_static_share"]) > 0.99
    assert float(variance_shares(what, time_tokens=4)["target_static_share"]) == pytest.approx(0.25, abs=0.05)


def test_centring_removes_the_chosen_shortcut():
    gen = torch.Generator().manual_seed(0)
    where = torch.randn(1, 64, 32, generator=gen) * 5
    which = torch.randn(16, 1, 32, generator=gen) * 5
    targets = where + which + torch.randn(16, 64, 32, generator=gen)
    by_position, by_clip = centre_targets(targets, "position"), centre_targets(targets, "clip")
    assert position_share(by_position) < 2 / 16 and float(variance_shares(by_position)["target_clip_share"]) > 0.5
    assert float(variance_shares(by_clip)["target_clip_share"]) < 1e-3 and position_share(by_clip) > 0.5
    for centred in (by_position, by_clip):  # still layer-normed
        assert torch.allclose(centred.mean(-1), torch.zeros(16, 64), atol=1e-5)
        assert torch.allclose(centred.std(-1, correction=0), torch.ones(16, 64), atol=1e-3)
    assert centre_targets(targets, "none") is targets


def test_centred_targets_reach_the_loss(tmp_path):
    """`variant.target_centring` changes what the predictor regresses, not the shapes."""
    cfg_plain, cfg_centred = cfg_for(tmp_path), cfg_for(tmp_path, "variant.target_centring=clip")
    spec = DataSpec(kind="video", frames=8, size=32, num_classes={"shape": 4})
    losses = []
    for cfg in (cfg_plain, cfg_centred):
        torch.manual_seed(0)
        variant = VJEPA(cfg, spec)
        modules = variant.build("main")
        video = torch.rand(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
        variant.generator.manual_seed(0)
        out = variant.step(modules, {spec.input_key: video}, "main")
        losses.append(out["loss"].item())
        assert 0.0 <= float(out["target_position_share"]) <= 1.0 and 0.0 <= float(out["target_clip_share"]) <= 1.0
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_clip_variance_penalty_fires_on_one_vector_per_clip_or_its_positions_only():
    """High when every token of a clip is the same vector (the per-clip collapse) or its position's
    embedding, low when tokens differ in content, and blind to how far apart the clips are."""
    gen = torch.Generator().manual_seed(0)
    which = torch.randn(16, 1, 32, generator=gen).expand(-1, 64, -1)
    where = torch.randn(1, 64, 32, generator=gen).expand(16, -1, -1)
    what = torch.randn(16, 64, 32, generator=gen)
    positions = torch.stack([torch.randperm(64, generator=gen)[:24] for _ in range(16)])  # each clip's visible tokens

    def penalty(tokens):
        return float(clip_variance_penalty(torch.gather(tokens, 1, positions.unsqueeze(-1).expand(-1, -1, 32)), positions, 64, floor=1.0))

    assert penalty(which + 0.01 * what) > 0.9
    assert penalty(where + 0.01 * what) > 0.8 and penalty(where + which + 0.01 * what) > 0.8
    assert penalty(what) < 0.2 and penalty(which * 0.2 + what) < 0.2
    assert 0.2 < penalty(where + what) < 0.5


@pytest.mark.parametrize("variant_name", ["vjepa", "ui_jepa"])
def test_clip_variance_weight_adds_the_penalty_to_the_loss(tmp_path, variant_name):
    """Off by default (logged, not optimised); with a weight the loss is the prediction loss plus weight x penalty."""
    from orchestrator import registry as variants

    video = torch.rand(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    outs = []
    for weight in (0.0, 2.0):
        cfg = cfg_for(tmp_path, f"variant={variant_name}", f"variant.clip_variance_weight={weight}", "variant.clip_variance_floor=1.0")
        torch.manual_seed(0)
        variant = variants.variant(variant_name)(cfg, SPEC)
        modules = variant.build("main")
        variant.generator.manual_seed(0)
        outs.append(variant.step(modules, {SPEC.input_key: video}, "main"))
    off, on = outs
    assert 0.0 < float(off["loss_clip_variance"]) < 1.0
    assert on["loss"].item() == pytest.approx(off["loss"].item() + 2.0 * float(off["loss_clip_variance"]), rel=1e-5)
