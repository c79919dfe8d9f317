"""The self-supervised host's one call: the run's evaluations, each probe-style one also on the baselines."""
from __future__ import annotations

import torch
from torch.utils.data import Subset

from orchestrator.evaluate import baselines
from orchestrator.evaluate.base import EvalContext, Features
from orchestrator.evaluate.features import eval_mode, extract, fresh_modules, raw_tokens
from orchestrator.evaluate.registry import choose, evaluation

HOST = "ssl"


def evaluation_data(entry, cfg) -> dict:
    """The probes' train and val subsets (`eval.train_clips`, `eval.val_clips`)."""
    sets = {}
    for split, n in (("train", cfg.eval.train_clips), ("val", cfg.eval.val_clips)):
        ds = entry.load(cfg.data, split)
        sets[split] = Subset(ds, range(min(n, len(ds))))
    return sets


ARTIFACTS = "artifacts"  # as in a variant's step: {name: tensor} to keep in the results store, not to log


def run_evaluations(variant, modules, cfg, device: torch.device, datasets: dict, stage: str = "main",
                    previous=None, amp: bool = False) -> dict[str, float]:
    """Every chosen evaluation on the stage's frozen modules (rank 0 only), plus the baselines if
    `eval.baselines`; `previous` is what `variant.build(stage, previous)` got (for the random-init copy)."""
    spec = variant.data_spec
    chosen = [evaluation(name) for name in choose(spec, HOST, list(cfg.eval.get("kinds") or ()))]
    probes = [e for e in chosen if e.probe_style]
    out: dict = {}
    kept: dict = {}
    for e in chosen:
        if not e.probe_style:
            out.update(scalars_keeping(e.run(EvalContext(variant, modules, cfg, device, stage)), kept))
    if probes:
        keys = sorted({k for e in probes for k in e.targets(spec)})
        with eval_mode(modules):
            feats = extract(lambda b: variant.features(modules, b), datasets, keys, device, amp)
            views = {name: extract(encode, datasets, keys, device, amp) for name, encode in variant.extra_features(modules).items()}
        out.update(score_all(probes, feats, spec, cfg, kept))
        for name, view in views.items():
            out.update({f"{name}/{k}": v for k, v in score_all(probes, view, spec, cfg).items()})
        if cfg.eval.get("baselines", True):
            out.update(baselines.cached(cfg, stage, lambda: baseline_metrics(probes, variant, cfg, device, datasets, stage, previous, keys, amp)))
    if kept:
        out[ARTIFACTS] = kept
    return out


def scalars_keeping(result: dict, kept: dict | None) -> dict[str, float]:
    """One evaluation's scalars; the tensors it returned under `artifacts` (curves, confusion matrices)
    go to `kept`, which the host stores beside the step's own (None: a baseline's, not kept)."""
    tensors = result.pop(ARTIFACTS, None) or {}
    if kept is not None:
        kept.update(tensors)
    return result


def score_all(probes, feats: dict[str, Features], spec, cfg, kept: dict | None = None) -> dict[str, float]:
    out = {}
    for e in probes:
        out.update(scalars_keeping(e.score(feats["train"], feats["val"], spec, cfg), kept))
    return out


def baseline_metrics(probes, variant, cfg, device, datasets, stage, previous, keys, amp) -> dict[str, float]:
    """The probes on a fresh encoder built with the run's seed, and on the raw inputs."""
    spec = variant.data_spec
    fresh = fresh_modules(variant, stage, previous, cfg.seed, device)
    with eval_mode(fresh):
        random_feats = extract(lambda b: variant.features(fresh, b), datasets, keys, device, amp)
    raw_feats = extract(lambda b: raw_tokens(b, spec, cfg.model), datasets, keys, device, False)
    return {**baselines.suffixed(score_all(probes, random_feats, spec, cfg), "random_init"),
            **baselines.suffixed(score_all(probes, raw_feats, spec, cfg), "raw_input")}
