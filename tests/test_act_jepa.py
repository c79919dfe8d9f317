"""ACT and ACT-JEPA (issue 19): oracle demos at OGBench's evaluation goals, chunked targets, temporal
ensembling, the JEPA branch's isolation, and the imitation host end to end."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs import manipulation
from envs.manipulation import DemoConfig, DemoWindows, Episode
from orchestrator import registry
from orchestrator.config import ConfigError, compose_run
from orchestrator.datasets import DataError
from variants.act import ACT, TemporalEnsemble
from variants.act_jepa import ACTJEPA
from variants.base import DataSpec

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- data
def test_the_oracle_reaches_every_evaluation_goal():
    clean = manipulation.collect(DemoConfig(noise=0.0, p_random=0.0), "train", [(i, 0.0, True) for i in range(5)])
    assert [ep.task_id for ep in clean] == [1, 2, 3, 4, 5]
    assert all(ep.success for ep in clean)  # noise-free oracle: every goal
    assert all(len(ep) < 200 for ep in clean)  # ended at the goal, not the time limit
    noisy = manipulation.collect(DemoConfig(), "train", manipulation._split_plan(DemoConfig(num_demos=10), "train"))
    assert np.mean([ep.success for ep in noisy]) >= 0.8  # the default noise still gives mostly successes
    wild = manipulation.collect(DemoConfig(max_steps=80), "train", [(i, 3.0, False) for i in range(3)])
    assert not all(ep.success for ep in wild)  # heavy noise gives failures, recorded as such
    again = manipulation.collect(DemoConfig(noise=0.0, p_random=0.0), "train", [(1, 0.0, True)])[0]
    np.testing.assert_array_equal(again.goal, clean[1].goal)  # the goal's arm pose is seeded too
    np.testing.assert_array_equal(again.actions, clean[1].actions)


def test_lights_out_presses_solve_a_hand_worked_board():
    goal = np.array([1, 1, 0, 1, 0, 1, 0, 1, 1])  # OGBench puzzle-3x3 task 1, from all off
    assert manipulation.lights_out_presses(np.zeros(9, int), goal) == [0, 8]  # 0 flips 0,1,3; 8 flips 5,7,8
    assert manipulation.lights_out_presses(goal, goal) == []
    assert manipulation.lights_out_presses(np.zeros(9, int), np.array([1, 1, 0, 1, 0, 0, 0, 0, 0])) == [0]


def test_the_puzzle_oracle_reaches_every_evaluation_goal():
    cfg = DemoConfig(env_name="puzzle-3x3", noise=0.0, p_random=0.0)
    assert cfg.max_steps == 500  # OGBench's puzzle-3x3 horizon
    clean = manipulation.collect(cfg, "train", [(i, 0.0, True) for i in range(5)])
    assert [ep.task_id for ep in clean] == [1, 2, 3, 4, 5] and all(ep.success for ep in clean)
    assert all(len(ep) < 150 for ep in clean)  # a few presses each, far inside the horizon
    assert clean[0].observations.shape[1] == 55 and clean[0].object_state.shape[1] == 10
    np.testing.assert_array_equal(clean[0].object_state[0, :9], np.zeros(9))  # task 1 starts all off
    noisy = manipulation.collect(DemoConfig(env_name="puzzle-3x3"), "train", [(i, 0.1, True) for i in range(5)])
    assert np.mean([ep.success for ep in noisy]) >= 0.8


def known_episode(T: int = 6, D: int = 3, A: int = 2, success: bool = True) -> Episode:
    """o_t = [t, t, t], a_t = [t, -t]: every target names its step."""
    obs = np.repeat(np.arange(T, dtype=np.float32)[:, None], D, 1)
    actions = np.stack([np.arange(T), -np.arange(T)], 1).astype(np.float32)
    return Episode(obs, actions, goal=np.full(D, 99.0, np.float32), success=success, task_id=1,
                   object_state=np.repeat(np.arange(T, dtype=np.float32)[:, None], 4, 1),
                   final_observation=np.full(D, float(T), np.float32))


def test_chunked_action_targets_line_up_with_the_demo_timeline():
    w = DemoWindows([known_episode()], chunk=3)
    assert len(w) == 6
    row = w[4]  # t = 4 of 6 steps: actions a_4, a_5, then padding
    np.testing.assert_array_equal(row["actions"][:, 0], [4, 5, 0])
    np.testing.assert_array_equal(row["action_mask"], [1, 1, 0])
    np.testing.assert_array_equal(row["next_observations"][:, 0], [5, 6, 6])  # o_5, o_6 (the final state), padding
    np.testing.assert_array_equal(row["next_mask"], [1, 1, 0])
    np.testing.assert_array_equal(row["observation"], [4, 4, 4, 99, 99, 99])
    np.testing.assert_array_equal(w[0]["actions"][:, 1], [0, -1, -2])
    np.testing.assert_array_equal(w[1]["future_state"], [4, 4, 4, 4])  # state at t + k
    np.testing.assert_array_equal(w[4]["future_state"], [5, 5, 5, 5])  # clipped to the last step


def test_temporal_ensembling_matches_a_hand_computed_example():
    m = 0.5
    ens = TemporalEnsemble(m)
    ens.add(0, torch.tensor([[1.0], [2.0], [3.0]]))
    assert ens.action(0).item() == 1.0
    ens.add(1, torch.tensor([[10.0], [20.0], [30.0]]))
    w = math.exp(-m)  # the oldest prediction weighs 1, the next exp(-m)
    assert ens.action(1).item() == pytest.approx((2.0 + w * 10.0) / (1 + w))
    ens.add(2, torch.tensor([[100.0], [200.0], [300.0]]))
    assert ens.action(2).item() == pytest.approx((3.0 + w * 20.0 + w * w * 100.0) / (1 + w + w * w))
    ens.add(3, torch.tensor([[7.0], [8.0], [9.0]]))  # the chunk from step 0 no longer covers step 3
    assert ens.action(3).item() == pytest.approx((30.0 + w * 200.0 + w * w * 7.0) / (1 + w + w * w))


def run_cfg(name: str, **variant):
    base = {"variant": {**ACT.Config().__dict__, **(ACTJEPA.Config().__dict__ if name == "act_jepa" else {}), **variant},
            "seed": 0}
    base["variant"].update(hidden=32, heads=2, ff=64, layers=1, decoder_layers=1, latent=4)
    return OmegaConf.create(base)


def small(name: str, chunk: int = 3, **variant):
    """A tiny ACT / ACT-JEPA for the synthetic episodes (D = 3, A = 2)."""
    inputs = {"observation": (6,), "actions": (chunk, 2), "action_mask": (chunk,), "next_observations": (chunk, 3),
              "next_mask": (chunk,), "labelled": ()}
    cls = ACTJEPA if name == "act_jepa" else ACT
    variant = cls(run_cfg(name, **variant), DataSpec(kind="demos", inputs=inputs))
    torch.manual_seed(0)
    return variant, variant.build("main")


def batch_of(*episodes, chunk=3, failed="jepa"):
    w = DemoWindows(list(episodes), chunk, failed)
    return {k: torch.from_numpy(v) for k, v in w.arrays.items()}


def test_act_through_its_policy_ensembles_its_own_chunks():
    variant, modules = small("act", ensemble_m=0.3)
    obs = torch.cat([torch.randn(1, 6), torch.zeros(1, 1)], 1)  # [state, goal, t = 0]
    first = variant.act(modules, obs)
    chunk0 = variant.predict_chunk(modules, obs[:, :-1])[0]
    torch.testing.assert_close(first[0], chunk0[0])
    nxt = torch.cat([torch.randn(1, 6), torch.ones(1, 1)], 1)
    chunk1 = variant.predict_chunk(modules, nxt[:, :-1])[0]
    w = math.exp(-0.3)
    torch.testing.assert_close(variant.act(modules, nxt)[0], (chunk0[1] + w * chunk1[0]) / (1 + w))
    torch.testing.assert_close(variant.act(modules, obs)[0], chunk0[0])  # t = 0 again: a fresh episode


def test_the_target_branch_receives_no_gradient_and_follows_by_ema():
    variant, modules = small("act_jepa")
    out = variant.step(modules, batch_of(known_episode()), "main")
    out["loss"].backward()
    assert out["jepa"].item() > 0
    assert all(p.grad is None and not p.requires_grad for p in modules["target_encoder"].parameters())
    assert all(p.grad is not None for p in modules["predictor"].parameters())
    assert any(p.grad.abs().sum() > 0 for p in modules["encoder"].parameters())
    assert "target_encoder" not in variant.trainable(modules, "main")
    with torch.no_grad():
        for p in modules["encoder"].parameters():
            p.add_(1.0)
    before = [p.clone() for p in modules["target_encoder"].parameters()]
    variant.after_step(modules, 1, 10, "main")
    assert all(not torch.equal(a, p) for a, p in zip(before, modules["target_encoder"].parameters()))


def test_failed_episodes_reach_only_the_jepa_branch_when_configured():
    good, bad = known_episode(success=True), known_episode(success=False)
    assert len(DemoWindows([good, bad], 3, "drop")) == 6  # dropped
    assert DemoWindows([good, bad], 3, "actions").arrays["labelled"].tolist() == [1.0] * 12
    batch = batch_of(good, bad, failed="jepa")
    assert batch["labelled"].tolist() == [1.0] * 6 + [0.0] * 6
    variant, modules = small("act_jepa", cvae=False)
    torch.set_grad_enabled(False)
    try:
        check_branches(variant, modules, batch)
    finally:
        torch.set_grad_enabled(True)


def test_unlabelled_windows_ride_beside_a_full_batch_of_demos_and_resume_in_step():
    """With data.failed=jepa each step reads `train.batch_size` demo windows plus as many unlabelled ones
    (drawn uniformly, 40 failed windows would crowd out 6 demo windows); a resumed stream continues both."""
    from orchestrator.imitation import imitation_batches, rows_per_step
    from orchestrator.session import make_session

    good, bad = known_episode(T=6, success=True), known_episode(T=40, success=False)
    windows = DemoWindows([good, bad], 3, "jepa")
    cfg = OmegaConf.create({"seed": 0, "data": {"name": "manip_cube_single"},
                            "train": {"batch_size": 4, "loader_workers": 0}})
    assert rows_per_step(windows, cfg) == 8 and rows_per_step(DemoWindows([good, bad], 3, "drop"), cfg) == 4
    stream = imitation_batches(windows, cfg, make_session("local"), torch.device("cpu"))
    drawn = [next(stream) for _ in range(5)]
    for batch in drawn:
        assert batch["labelled"].tolist() == [1.0] * 4 + [0.0] * 4
        assert batch["observation"][:4, 0].max() < 6  # demo rows come from the 6-step success
    resumed = imitation_batches(windows, cfg, make_session("local"), torch.device("cpu"), skip=3)
    for expected in drawn[3:]:
        got = next(resumed)
        assert all(torch.equal(got[key], expected[key]) for key in expected)
    with pytest.raises(ValueError, match="demo windows cannot fill one batch of 8"):
        next(imitation_batches(windows, OmegaConf.merge(cfg, {"train": {"batch_size": 8}}), make_session("local"),
                               torch.device("cpu")))


def check_branches(variant, modules, batch):
    base = variant.step(modules, batch, "main")
    moved_actions = {**batch, "actions": batch["actions"].clone()}
    moved_actions["actions"][6:] += 5.0  # the failed episode's actions
    out = variant.step(modules, moved_actions, "main")
    assert float(out["action_l1"]) == pytest.approx(float(base["action_l1"]))  # never an action target
    moved_obs = {**batch, "next_observations": batch["next_observations"].clone()}
    moved_obs["next_observations"][6:] += 5.0
    assert float(variant.step(modules, moved_obs, "main")["jepa"]) != pytest.approx(float(base["jepa"]))  # but JEPA learns from it


def cube_policy(chunk: int = 3):
    """An untrained but fixed ACT on cube-single's real shapes (state and goal 28-D each, 5-D actions)."""
    inputs = {"observation": (56,), "actions": (chunk, 5), "action_mask": (chunk,), "next_observations": (chunk, 28),
              "next_mask": (chunk,), "labelled": ()}
    variant = ACT(run_cfg("act"), DataSpec(kind="demos", inputs=inputs))
    torch.manual_seed(0)
    return variant, variant.build("main")


def test_rollouts_are_a_function_of_the_networks_and_the_seed():
    """Same networks, same seed: the same episodes, step for step (starts, goals, ends); another seed:
    other starts. OGBench draws each goal's arm pose from an unseeded action space, which made
    rollouts differ under one seed before `seed_action_space`."""
    from orchestrator.rl.policy_module import env_recipe, rollout_episodes

    variant, modules = cube_policy()
    cfg = OmegaConf.create({"eval": {"episode_length": 6}})
    env = env_recipe(manipulation.make_goal_env, {"env_name": "cube-single", "task_id": 2}, cfg)
    runs = [rollout_episodes(variant, modules, env, 3, 0, seed) for seed in (0, 0, 1)]
    first, again, other = runs
    assert first["rollout/length"] == [6.0, 6.0, 6.0]
    for key in ("rollout/return", "rollout/success", "rollout/length"):
        assert first[key] == again[key]
    for key in ("rollout/first_obs", "rollout/last_obs"):
        for a, b in zip(first[key], again[key]):
            np.testing.assert_array_equal(a, b)  # state, goal and step index, bit for bit
    starts = [o[:28] for o in first["rollout/first_obs"]]
    assert not np.array_equal(starts[0], starts[1])  # episodes of one call start apart
    assert not any(np.array_equal(a[:28], b[:28]) for a, b in zip(first["rollout/first_obs"], other["rollout/first_obs"]))


# ---------------------------------------------------------------------------- files
def write_aloha(path: Path, T: int = 8, D: int = 14):
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        f.create_dataset("action", data=np.arange(T * D, dtype=np.float32).reshape(T, D))
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=np.ones((T, D), np.float32) * np.arange(T)[:, None])
        obs.create_dataset("qvel", data=np.zeros((T, D), np.float32))
        obs.create_group("images").create_dataset("top", data=np.zeros((T, 4, 4, 3), np.uint8))


def test_reads_act_aloha_episodes_and_its_own_layout(tmp_path):
    for i in range(2):
        write_aloha(tmp_path / f"episode_{i}.hdf5", T=8 + i)
    episodes = manipulation.load_episodes(tmp_path)
    assert [len(ep) for ep in episodes] == [8, 9] and episodes[0].observations.shape == (8, 14)
    np.testing.assert_array_equal(episodes[1].goal, np.full(14, 8.0))  # the last state is the goal
    ours = tmp_path / "ours" / "demos.hdf5"
    ours.parent.mkdir()
    manipulation.write_episodes(ours, [known_episode(), known_episode(success=False)], "cube-single", {})
    back = manipulation.load_episodes(ours)
    assert [ep.success for ep in back] == [True, False]
    np.testing.assert_array_equal(back[0].actions, known_episode().actions)
    np.testing.assert_array_equal(back[0].object_state, known_episode().object_state)


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_bad_input_fails_with_a_fix(tmp_path):
    with pytest.raises(manipulation.DemoError, match="Fix: use 1..5"):
        manipulation.make_goal_env("cube-single", task_id=9)
    with pytest.raises(manipulation.DemoError, match="unknown manipulation env.*Fix:"):
        manipulation.make_goal_env("cube-quadruple", task_id=1)
    with pytest.raises(manipulation.DemoError, match="no such file.*Fix:"):
        manipulation.load_episodes(tmp_path / "missing.hdf5")
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(manipulation.DemoError, match="not a readable HDF5.*Fix:"):
        manipulation.load_episodes(corrupt)
    with pytest.raises(manipulation.DemoError, match="longer than every episode.*Fix: use data.chunk between 1 and 6"):
        DemoWindows([known_episode()], chunk=7)
    write_aloha(tmp_path / "episode_0.hdf5")
    entry = registry.dataset("manip_cube_single")
    with pytest.raises(DataError, match="longer than every episode"):
        entry.check(OmegaConf.structured(entry.config_class(path=str(tmp_path / "episode_0.hdf5"), chunk=50)))
    with pytest.raises(DataError, match="data.max_steps=200.*Fix:"):
        entry.check(OmegaConf.structured(entry.config_class(chunk=500)))
    with pytest.raises(ConfigError, match="no demo windows.*Fix: use data=manip_cube_single"):
        compose_run(["variant=act_jepa", "data=ogbench_cube_single_play", "budget.steps=1"])
    run = cli("run", "variant=act", "data=manip_cube_single", f"data.path={corrupt}", "budget.steps=1", cwd=tmp_path)
    said = run.stdout + run.stderr
    assert run.returncode == 2 and "error:" in said and "not a readable HDF5" in said and "Fix:" in said, said
    run = cli("run", "variant=act", "data=manip_cube_single", f"data.path={tmp_path / 'nope'}", "budget.steps=1", cwd=tmp_path)
    said = run.stdout + run.stderr
    assert run.returncode == 2 and "error:" in said and "no such file" in said and "Fix:" in said, said


# ---------------------------------------------------------------------------- the host, end to end
@pytest.mark.slow
def test_act_jepa_trains_and_is_scored_by_rollouts_on_every_goal(ray_session, data_root, tmp_path):
    from orchestrator.train import launch

    cfg = compose_run(["variant=act_jepa", "data=manip_cube_single", f"data.root={data_root}", "data.num_demos=6",
                       "data.num_val=2", "data.num_extra=2", "data.failed=jepa", "variant.hidden=32", "variant.heads=2",
                       "variant.ff=64", "budget.steps=6", "train.batch_size=16", "train.log_every=3", "eval.episodes=1",
                       "eval.episode_length=5", f"storage={tmp_path}"])
    out = launch(cfg, "act-jepa-e2e")
    for task in range(1, 6):
        assert 0.0 <= out[f"eval/task{task}/success"] <= 1.0
    assert out["score"] == out["eval/success_mean"] and out["flops_total"] > 0 and out["jepa"] > 0
    assert {"probe/future_state_r2", "probe/future_state_r2/raw_input", "probe/future_state_r2/random_init"} <= set(out)


@pytest.mark.slow
def test_an_interrupted_imitation_run_resumes_to_the_uninterrupted_result(ray_session, data_root, tmp_path):
    """`jepa run --run-id` killed after a checkpoint, then run again: it continues from that checkpoint
    (no step trained twice) and ends where an uninterrupted run ends."""
    import os
    import signal
    import time

    from orchestrator.results import ResultsStore
    from orchestrator.runs import local_checkpoint_dir
    from orchestrator.train import launch
    from orchestrator.train_state import CHECKPOINT_FILE

    overrides = ["variant=act", "data=manip_cube_single", f"data.root={data_root}", "data.num_demos=6", "data.num_val=2",
                 "variant.hidden=32", "variant.heads=2", "variant.ff=64", "budget.steps=200", "train.batch_size=16",
                 "train.log_every=25", "train.checkpoint_every=25", "eval.episodes=1", "eval.episode_length=2",
                 "sweep=resume"]
    reference = launch(compose_run([*overrides, f"storage={tmp_path / 'reference'}"]), "reference")
    storage = tmp_path / "interrupted"
    cfg = compose_run([*overrides, f"storage={storage}"])
    checkpoint = local_checkpoint_dir(cfg, "cut") / CHECKPOINT_FILE
    jepa = str(Path(sys.executable).parent / "jepa")
    process = subprocess.Popen([jepa, "run", "--run-id", "cut", *overrides, f"storage={storage}"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not checkpoint.is_file() and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    cut_at = int(torch.load(checkpoint, weights_only=True)["step"])
    assert 0 < cut_at < 200, cut_at  # killed half-way (else this test proves nothing)
    resumed = launch(cfg, "cut")
    steps = ResultsStore(storage).metrics("resume", "cut").filter(metric="loss")["step"].to_list()
    assert sorted(set(steps)) == list(range(25, 201, 25))
    assert resumed["step"] == 200 and resumed["resumed_from_step"] == cut_at  # continued, not started again
    for key in ("loss", "action_l1", "kl", "probe/future_state_r2"):
        assert resumed[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-7), key


def test_reference_lines_floor_and_ceiling(capsys):
    """The results page's random-policy floor and oracle ceiling: random reaches no cube-single goal in
    one episode each, the noise-free oracle reaches all five, and the command prints both lines."""
    from envs.manipulation_baselines import main

    main(["--episodes", "1"])
    printed = capsys.readouterr().out
    assert "random policy: mean 0.000  per goal [0.0, 0.0, 0.0, 0.0, 0.0]" in printed
    assert "oracle, noise-free: mean 1.000  per goal [1.0, 1.0, 1.0, 1.0, 1.0]" in printed
