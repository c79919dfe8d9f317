"""UI-JEPA (issue 20): generated UI activity clips and their replayable scripts, the zero-shot/few-shot splits,
the temporal mask family, the intent decoder and its metrics, bad input, and one run through the loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from envs import ui
from orchestrator import registry
from orchestrator.config import ConfigError, compose_run
from orchestrator.datasets import DataError
from orchestrator.evaluate.intent_decoding import slots_match, token_f1
from orchestrator.train import launch
from tests.conftest import tiny_overrides
from variants.ui_jepa import UIJEPA, IntentDecoder, TemporalMasker

UI = ["variant=ui_jepa", "data=ui_activity", "model.patch=4"]
SMALL = ui.UIConfig(num_train=200, num_val=100)


# ------------------------------------------------------------------------------- the temporal mask
def test_the_temporal_mask_hides_whole_frames():
    """Every target row is all tokens of some time slices (hence whole frames), the context all tokens of the others."""
    t, h, w, tubelet = 4, 8, 8, 2
    masker, gen = TemporalMasker((t, h, w), 0.5), torch.Generator().manual_seed(0)
    hidden_sets = set()
    for _ in range(20):
        m = masker(6, gen)
        for ctx, tgt in zip(m.context.tolist(), m.target.tolist()):
            slices = {i // (h * w) for i in tgt}
            assert len(slices) == 2 and sorted(tgt) == [s * h * w + k for s in sorted(slices) for k in range(h * w)]
            assert set(ctx) | set(tgt) == set(range(t * h * w)) and not set(ctx) & set(tgt)
            frames = {s * tubelet + f for s in slices for f in range(tubelet)}  # the pixels' frames they cover
            video = torch.zeros(t * tubelet)
            video[sorted(frames)] = 1
            assert video.sum() == 4 and all(video[f] == 1 for f in frames)
            hidden_sets.add(tuple(sorted(slices)))
    assert len(hidden_sets) > 3  # which frames are hidden varies


def test_the_variant_draws_the_configured_families_and_spatial_only_has_no_temporal_one():
    spec = registry.dataset("ui_activity").spec(compose_run([*UI, "budget.steps=1"]).data)
    both = UIJEPA(compose_run([*UI, "budget.steps=1"]), spec)
    spatial = UIJEPA(compose_run([*UI, "budget.steps=1", "variant.temporal_mask_ratio=0"]), spec)
    assert list(both.families) == ["short", "long", "temporal"] and list(spatial.families) == ["short", "long"]
    temporal = both.families["temporal"](2, torch.Generator().manual_seed(1))
    assert temporal.target.size(1) == 2 * 8 * 8  # half of the 4 time slices of an 8x8 token grid


# ------------------------------------------------------------------------------- clips and scripts
def test_replaying_a_clips_script_reproduces_its_labelled_intent():
    """For clips of every template: the intent does not hold at the start, holds after replaying the script
    on the state machine, and the clip's last frame is the final state as drawn."""
    parts, seen_templates = ui.splits(SMALL), set()
    for split, count in (("train", 80), ("val", 60)):
        for i in range(count):
            clip = ui.make_clip(SMALL, split, i, parts)
            states = ui.replay(clip.initial, clip.script)
            assert not ui.intent_holds(clip.template, clip.values, clip.initial), clip.template
            assert ui.intent_holds(clip.template, clip.values, states[-1]), (clip.template, clip.values, clip.script)
            assert clip.sentence == ui.template(clip.template).fill(clip.values)
            np.testing.assert_array_equal(clip.video[-1], ui.render(states[-1], SMALL.size))
            seen_templates.add(clip.template)
    assert len(seen_templates) >= 20
    clip = ui.make_clip(SMALL, "train", 3, parts)
    with pytest.raises(ui.ScriptError):  # a tap on something the screen does not show
        ui.replay(clip.initial, [("tap", "btn:send")])


def test_clips_are_deterministic_per_seed_and_styles_vary():
    a, b = ui.make_clip(SMALL, "val", 7), ui.make_clip(SMALL, "val", 7)
    np.testing.assert_array_equal(a.video, b.video)
    other = ui.make_clip(ui.UIConfig(num_train=200, num_val=100, seed=1), "val", 7)
    assert not np.array_equal(a.video, other.video)
    assert len({tuple(ui.make_clip(SMALL, "train", i).initial["style"]["accent"]) for i in range(10)}) == 10


def test_zero_shot_intents_never_leak_into_training():
    """No train clip uses a reserved (template, slot) combination or an unseen template; few-shot templates get
    exactly `few_shot` train clips; every zero-shot val word appears in some training sentence."""
    cfg = ui.UIConfig(num_train=600, num_val=300)
    parts = ui.splits(cfg)
    train = [ui.clip_plan(cfg, "train", i, ui.clip_rng(cfg.seed, "train", i), parts) for i in range(cfg.num_train)]
    val = [ui.clip_plan(cfg, "val", i, ui.clip_rng(cfg.seed, "val", i), parts) for i in range(cfg.num_val)]
    for name, values, group in train:
        assert values not in parts.reserved.get(name, ()) and name not in parts.unseen and group in (0, 2)
    for name in parts.few_shot:
        assert sum(t == name for t, _, _ in train) == cfg.few_shot
    zero = [(n, v) for n, v, g in val if g == 1]
    assert len(zero) >= 40 and all(v in parts.reserved[n] for n, v in zero)
    assert {g for _, _, g in val} == {0, 1, 2, 3}
    trained_words = {w for n, v, _ in train for w in ui.template(n).fill(v).split()}
    assert all(set(ui.template(n).fill(v).split()) <= trained_words for n, v in zero)
    assert {(n, v) for n, v, _ in train}.isdisjoint(zero)


def test_the_entry_caches_and_serves_aligned_samples(tmp_path):
    cfg = compose_run([*UI, f"data.root={tmp_path}", "data.num_train=24", "data.num_val=10", "budget.steps=1"])
    entry = registry.dataset("ui_activity")
    entry.prepare(cfg.data)
    train, val = entry.load(cfg.data, "train"), entry.load(cfg.data, "val")
    item, vocab = val[2], ui.vocabulary()
    assert item["video"].shape == (3, 8, 32, 32) and int(item["intent_group"]) == 1
    clip = ui.make_clip(ui.UIConfig(num_train=24, num_val=10), "val", 2)
    assert ui.decode(item["intent_tokens"][1:].tolist(), vocab) == clip.sentence.split()
    assert [vocab[i] for i in item["intent_slots"].tolist() if i] == list(clip.values)
    assert {int(train[i]["intent_group"]) for i in range(len(train))} <= {0, 2}


# ------------------------------------------------------------------------------- the decoder and its metrics
@pytest.fixture
def one_thread():
    """Tiny matrices: on a loaded 2-core machine two intra-op threads made this 25x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_decoder_loss_falls_on_a_tiny_planted_set(one_thread):
    """Sentences fixed by which of 4 planted directions the clip tokens carry: the loss falls and greedy
    decoding writes the planted sentences back."""
    gen = torch.Generator().manual_seed(0)
    vocab = ui.vocabulary()
    sentences = ["turn on wifi", "call bob", "set an alarm for 7 30", "open maps"]
    ids = torch.tensor(np.stack([ui.encode(s, vocab, ui.max_length()) for s in sentences]))
    which = torch.arange(32) % 4
    directions = torch.randn(4, 16, generator=gen)
    tokens = directions[which][:, None, :] + 0.1 * torch.randn(32, 3, 16, generator=gen)
    torch.manual_seed(0)
    decoder = IntentDecoder(16, len(vocab), ui.max_length(), dim=32, depth=1)
    opt = torch.optim.AdamW(decoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = decoder.loss(tokens, ids[which])
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    written = [" ".join(ui.decode(row[1:], vocab)) for row in decoder.generate(tokens[:4]).tolist()]
    assert written == sentences


def test_token_f1_and_slot_match():
    assert token_f1(["call", "bob"], ["call", "bob"]) == 1.0
    assert token_f1(["call", "anna"], ["call", "bob"]) == 0.5
    assert token_f1([], ["call", "bob"]) == 0.0
    assert slots_match(["set", "an", "alarm", "for", "7", "30"], ["7", "30"])
    assert not slots_match(["set", "an", "alarm", "for", "30", "7"], ["7", "30"])  # order matters
    assert not slots_match(["call", "anna"], ["bob"])


# ------------------------------------------------------------------------------- bad input
def test_an_unknown_intent_template_is_a_clear_error():
    with pytest.raises(ui.UIError, match=r"error: unknown intent template 'order_pizza'.*Fix: use one of"):
        ui.template("order_pizza")
    cfg = compose_run([*UI, "data.unseen_templates=[order_pizza]", "budget.steps=1"])
    with pytest.raises(DataError, match=r"data\.unseen_templates names unknown.*order_pizza.*Fix"):
        registry.check_data(cfg.data)


def test_a_clip_shorter_than_the_tubelet_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"model\.tubelet.*data\.frames.*Fix"):
        compose_run([*UI, "data.frames=1", "budget.steps=1"])
    with pytest.raises(ConfigError, match=r"data\.frames.*temporal.*Fix: use data\.frames >= 4"):
        compose_run([*UI, "data.frames=2", "budget.steps=1"])  # one time token: nothing for a temporal mask to hide
    cfg = compose_run([*UI, "budget.steps=1"])
    variant = UIJEPA(cfg, registry.dataset("ui_activity").spec(cfg.data))
    with pytest.raises(ValueError, match=r"error: the clip has 1 frames.*Fix"):
        variant.features(variant.build("main"), {"video": torch.zeros(2, 3, 1, 32, 32)})


def test_an_empty_vocabulary_is_a_clear_error():
    with pytest.raises(ui.UIError, match=r"error: the intent vocabulary is empty.*Fix"):
        ui.vocabulary(())
    with pytest.raises(ValueError, match=r"error: the intent vocabulary has 3 entries.*Fix"):
        IntentDecoder(16, len(ui.SPECIALS), 8)


def test_bad_mask_keys_name_the_key():
    with pytest.raises(ConfigError, match=r"variant\.mask_families.*Fix"):
        compose_run([*UI, "variant.mask_families=[short,frames]", "budget.steps=1"])
    with pytest.raises(ConfigError, match=r"variant\.temporal_mask_ratio.*Fix"):
        compose_run([*UI, "variant.temporal_mask_ratio=1.0", "budget.steps=1"])


# ------------------------------------------------------------------------------- through the loop
@pytest.mark.slow
def test_one_run_through_the_loop_scores_intents_against_baselines(ray_session, tmp_path, data_root):
    tiny = [o for o in tiny_overrides(tmp_path, data_root) if not o.startswith("data.")]
    cfg = compose_run(tiny + [*UI, f"data.root={data_root}", "data.num_train=64", "data.num_val=40", "budget.steps=4",
                              "eval.kinds=[intent_decoding]", "eval.train_clips=64", "eval.val_clips=40", "sweep=ui-run"])
    metrics = launch(cfg, "ui-run")
    assert metrics["final"] and metrics["step"] >= 1 and metrics["loss_temporal"] > 0
    for key in ("intent_acc_seen", "intent_acc_few_shot", "intent_f1_zero_shot", "intent_slot_exact_zero_shot",
                "intent_f1_unseen_template"):
        for suffix in ("", "/random_init", "/raw_input"):
            assert 0.0 <= metrics[key + suffix] <= 1.0
