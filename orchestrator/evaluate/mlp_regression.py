"""MLP regression probe per float target: validation R² as `mlp_r2_<target>`. For targets no linear map of the
features can give even when they hold the information: seq-JEPA's relative rotation q1·q0⁻¹ is bilinear in the
two views' orientations, so a linear probe on their concatenated embeddings cannot read it (the paper's protocol
regresses it with an MLP). Chosen only through `eval.kinds`."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from orchestrator.evaluate.base import Evaluation, Features
from variants.nn.probes import MLPHead, _fit, _standardize, r2_score


def fit_mlp_regressor(train_tokens, train_targets, val_tokens, val_targets, epochs: int = 20, lr: float = 1e-3,
                      batch_size: int = 64, seed: int = 0) -> dict[str, float]:
    """Two hidden layers (variants.nn.probes.MLPHead) on mean-pooled standardised tokens, MSE on standardised
    targets; val R² per target (the linear probe's protocol otherwise)."""
    torch.manual_seed(seed)
    train_tokens, val_tokens = _standardize(train_tokens, val_tokens, (0, 1))
    ys = {k: _standardize(train_targets[k].float().reshape(len(train_tokens), -1),
                          val_targets[k].float().reshape(len(val_tokens), -1), (0,)) for k in train_targets}
    mlp = MLPHead(train_tokens.size(-1), {k: y[0].size(-1) for k, y in ys.items()}).to(train_tokens.device)
    _fit(mlp, len(train_tokens), lambda idx: sum(F.mse_loss(out, ys[k][0][idx]) for k, out in mlp(train_tokens[idx]).items()),
         epochs, lr, batch_size, seed, train_tokens.device)
    with torch.no_grad():
        pred = mlp(val_tokens)
    return {k: r2_score(pred[k], ys[k][1]) for k in ys}


class MLPRegression(Evaluation):
    name = "mlp_regression"

    def targets(self, spec) -> list[str]:
        return list(spec.float_targets)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        keys = self.targets(spec)
        with torch.enable_grad():
            r2 = fit_mlp_regressor(train.tokens, {k: train.targets[k] for k in keys}, val.tokens, {k: val.targets[k] for k in keys},
                                   epochs=cfg.eval.epochs, lr=cfg.eval.lr, seed=cfg.seed)
        return {f"mlp_r2_{k}": v for k, v in r2.items()}
