"""TD-JEPA and FB from pixels: augmentation, frame stacks on the episode timeline, FLOPs of the conv
encoder, zero-shot z from pixel features, and one tiny run through the real Ray host."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from envs import rendering_problem
from orchestrator.rl.frames import FrameStore, frame_transitions, stack_rows
from variants.base import DataSpec
from variants.fb import FB
from variants.nn.pixel_encoder import (
    STACK_SHAPE,
    PixelEncoder,
    conv_flops,
    random_shift,
)
from variants.td_jepa import TDJEPA

VARIANTS = pytest.mark.parametrize("cls", [TDJEPA, FB], ids=["td_jepa", "fb"])
TINY = {TDJEPA: {"phi_dim": 16, "psi_dim": 8, "hidden": 32}, FB: {"z_dim": 8, "hidden": 32}}
KEYS = ("observation", "next_observation", "future_observation")
needs_gl = pytest.mark.skipif(rendering_problem() is not None, reason=str(rendering_problem()))


def spec(observation) -> DataSpec:
    return DataSpec(kind="rl", inputs={**{k: tuple(observation) for k in KEYS}, "action": (6,)})


def make(cls, obs="pixels", **overrides):
    cfg = OmegaConf.create({"seed": 0, "variant": {**asdict(cls.Config()), **TINY[cls], "obs": obs, **overrides}})
    variant = cls(cfg, spec(STACK_SHAPE if obs == "pixels" else (24,)))
    return variant, cfg


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *STACK_SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# --- augmentation -------------------------------------------------------------------------
def test_random_shift_moves_each_sample_and_leaves_the_stored_frames_untouched():
    stored = frames(32)
    kept = stored.clone()
    shifted = random_shift(stored, torch.Generator().manual_seed(0))
    assert torch.equal(stored, kept)  # the data is never written
    assert shifted.shape == stored.shape and shifted.data_ptr() != stored.data_ptr()
    padded = torch.nn.functional.pad(stored.float(), (4, 4, 4, 4), mode="replicate")
    found = []
    for i in range(len(stored)):  # every output is the padded frame cropped at one shift in [-4, 4]²
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if torch.equal(shifted[i], padded[i, :, dy:dy + 64, dx:dx + 64])]
        assert len(hits) == 1, i
        found.append(hits[0])
    assert sum(shift != (4, 4) for shift in found) >= 24  # most samples actually move
    assert len(set(found)) >= 10  # per sample, not one shift for the batch
    assert torch.equal(random_shift(stored, torch.Generator().manual_seed(0)), shifted)  # from the generator alone


@VARIANTS
def test_augmentation_applies_to_training_only(cls):
    """The training step shifts its batch (two seeds of the variant's generator, two losses); acting
    and inference read frames as they are (same input, same output)."""
    variant, _ = make(cls)
    modules = variant.build("main")
    batch = {k: frames(16, i) for i, k in enumerate(KEYS)} | {"action": torch.zeros(16, 6)}
    losses = []
    for seed in (0, 1):
        variant.generator.manual_seed(seed)
        losses.append(float(variant.step(modules, batch, "main")["representation"]))
    assert losses[0] != losses[1]
    z = torch.ones(variant.task_dim)
    assert torch.equal(variant.act(modules, batch["observation"], z), variant.act(modules, batch["observation"], z))


# --- frame stacks ----------------------------------------------------------------------------
def test_frame_stacks_follow_the_episode_timeline():
    """Three hand-built episodes of 3, 1 and 2 transitions (4, 2, 3 frames): frame f is filled with f."""
    index = frame_transitions(np.array([3, 1, 2]))
    assert index["observation"].tolist() == [0, 1, 2, 4, 6, 7]
    assert index["next_observation"].tolist() == [1, 2, 3, 5, 7, 8]
    assert index["episode"].tolist() == [0, 0, 0, 1, 2, 2]
    assert index["episode_start"].nonzero()[0].tolist() == [0, 4, 6]
    hwc = np.broadcast_to(np.arange(9, dtype=np.uint8)[:, None, None, None], (9, 2, 2, 3))
    store = FrameStore.from_episodes(hwc, index["episode_start"])
    frame_ids = lambda f: store.stacks([f])[0].reshape(3, 3, 2, 2)[:, 0, 0, 0].tolist()  # oldest first
    assert [frame_ids(f) for f in range(9)] == [
        [0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3],  # episode 0
        [4, 4, 4], [4, 4, 5],                        # episode 1: never reaches back into episode 0
        [6, 6, 6], [6, 6, 7], [6, 7, 8],             # episode 2
    ]
    assert store.stacks(index["next_observation"]).shape == (6, 9, 2, 2)
    assert stack_rows(np.array([True, False]), stack=3).tolist() == [[0, 0, 0], [0, 0, 1]]


@needs_gl
def test_exorl_frame_indices_point_at_each_transitions_own_frames(tmp_path):
    """On collected pixel data, frame `observation[k]` / `next_observation[k]` are exactly the frames the
    (copying) loader gives transition k, and the store holds each frame once."""
    from envs import exorl

    cfg = exorl.ExplorationConfig("walker", "random", num_episodes=2, episode_length=6, pixels=True, episodes_per_task=2)
    path = exorl.collect(cfg, tmp_path)
    flat = exorl.load_exorl(path, pixels=True)
    hwc, lengths = exorl.load_frames(path)
    index = frame_transitions(lengths)
    assert len(hwc) == 14 and lengths.tolist() == [6, 6]
    assert np.array_equal(hwc[index["observation"]], flat["pixels"])
    assert np.array_equal(hwc[index["next_observation"]], flat["next_pixels"])
    assert np.array_equal(index["episode"], flat["episode"])


@needs_gl
def test_evaluation_env_stacks_rendered_frames_like_the_data():
    from envs.dmc_gym import dmc_pixel_env

    env = dmc_pixel_env(domain="walker", max_episode_steps=5)
    first, _ = env.reset(seed=0)
    assert first.shape == (9, 64, 64) and first.dtype == np.uint8 and env.observation_space.contains(first)
    assert np.array_equal(first[:3], first[3:6]) and np.array_equal(first[3:6], first[6:])  # reset: first frame ×3
    second = env.step(np.ones(6, np.float32))[0]
    assert np.array_equal(second[:6], first[3:]) and not np.array_equal(second[6:], first[6:])  # shifted by one frame
    env.close()


# --- FLOPs ---------------------------------------------------------------------------------
def test_encoder_flops_match_a_hand_count_of_the_convolutions():
    with torch.device("meta"):
        encoder = PixelEncoder()
        batch = torch.empty(8, *STACK_SHAPE)
    with FlopCounterMode(display=False) as counter:
        out = encoder(batch)
    assert out.shape == (8, 32 * 25 * 25) and encoder.out_dim == 32 * 25 * 25
    hand = 2 * (31 * 31 * 32 * 9 * 9 + 29 * 29 * 32 * 32 * 9 + 27 * 27 * 32 * 32 * 9 + 25 * 25 * 32 * 32 * 9)
    assert conv_flops() == hand
    assert counter.get_total_flops() == pytest.approx(8 * hand, rel=0.05)


@VARIANTS
def test_the_flop_counter_charges_the_pixel_encoder(cls):
    """The project's planner (`measure_step_flops`, FlopCounterMode on the meta device) traces the pixel
    step: more than the state step by at least one forward and backward of the encoder over the batch."""
    from orchestrator.budget import measure_step_flops

    pixels, pixels_cfg = make(cls, "pixels")
    state, state_cfg = make(cls, "state")
    batch = 16
    with_pixels = measure_step_flops(cls, pixels_cfg, pixels.data_spec, "main", batch)
    without = measure_step_flops(cls, state_cfg, state.data_spec, "main", batch)
    assert with_pixels - without >= 3 * batch * conv_flops()


# --- zero-shot inference -------------------------------------------------------------------
@VARIANTS
def test_task_inferred_from_pixel_features_changes_with_the_reward(cls):
    variant, _ = make(cls)
    modules = variant.build("main")
    seen = frames(300)
    brightness = seen[:, 6:].float().mean((1, 2, 3))  # how bright the newest frame is
    red = seen[:, 6].float().mean((1, 2)) - seen[:, 7:].float().mean((1, 2, 3))
    z_bright = variant.infer_task(modules, seen, brightness - brightness.mean())
    z_red = variant.infer_task(modules, seen, red - red.mean())
    assert float(torch.cosine_similarity(z_bright, z_red, dim=0)) < 0.9
    assert torch.allclose(variant.infer_task(modules, seen, brightness - brightness.mean()), z_bright)
    assert float(z_bright.norm()) == pytest.approx(variant.task_dim ** 0.5, rel=1e-4)


@pytest.mark.parametrize("obs", ["pixels", "state"])
def test_fb_b_norm_puts_every_state_on_the_sphere(obs):
    """`variant.b_norm`: B(s), its EMA target's and the features the probes read all have norm sqrt(z_dim)."""
    observations = frames(6) if obs == "pixels" else torch.randn(6, 24)
    norms = {}
    for b_norm in (False, True):
        variant, _ = make(FB, obs=obs, b_norm=b_norm)
        modules = variant.build("main")
        b = variant.features(modules, {"observation": observations})[:, 0]
        norms[b_norm] = b.norm(dim=-1)
        assert sum(p.numel() for p in modules["B"].parameters()) == sum(p.numel() for p in modules["target_B"].parameters())
    assert torch.allclose(norms[True], torch.full((6,), 8 ** 0.5), rtol=1e-4)
    assert not torch.allclose(norms[False], torch.full((6,), 8 ** 0.5), rtol=1e-2)


def test_pixel_config_must_agree_with_the_data():
    from orchestrator.config import ConfigError, compose_run

    with pytest.raises(ConfigError, match="variant.obs.*data.pixels=true"):
        compose_run(["variant=td_jepa", "variant.obs=pixels", "data=exorl_walker_random", "budget.steps=1"])
    with pytest.raises(ConfigError, match="variant.obs"):
        compose_run(["variant=fb", "data=exorl_walker_random", "data.pixels=true", "budget.steps=1"])


# --- through the Ray host -------------------------------------------------------------------
@needs_gl
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["td_jepa", "fb"])
def test_pixel_run_trains_and_evaluates_through_rllib(ray_session, tmp_path, data_root, variant):
    """Frame indices through RLlib's offline pipeline, stacks gathered in the learner, zero-shot z from
    labelled frame stacks, episodes rendered and stacked on an RLlib env runner."""
    from orchestrator.config import compose_run
    from orchestrator.results import ResultsStore
    from orchestrator.train import launch

    tiny = {"td_jepa": ["variant.phi_dim=16", "variant.psi_dim=8"], "fb": ["variant.z_dim=8"]}[variant]
    cfg = compose_run([f"variant={variant}", "variant.obs=pixels", "variant.hidden=32", *tiny,
                       "data=exorl_walker_random", "data.pixels=true", "data.num_episodes=2", "data.episode_length=30",
                       "data.episodes_per_task=1", f"storage={tmp_path}", "train.batch_size=16", "budget.steps=4",
                       "train.log_every=2", "train.checkpoint_every=4", "eval.episodes=1", "eval.episode_length=5",
                       "eval.tasks=[stand]"])
    launch(cfg, "pixels")
    store = ResultsStore(tmp_path)
    assert store.runs("adhoc")["status"].to_list()[-1] == "finished"
    final = store.metrics("adhoc", "pixels").filter(step=4)
    metrics = dict(zip(final["metric"].to_list(), final["value"].to_list()))
    assert "eval/stand/return" in metrics and np.isfinite(metrics["loss"])
    assert final["flops"].max() >= 4 * 16 * 3 * conv_flops()  # the encoder is charged
