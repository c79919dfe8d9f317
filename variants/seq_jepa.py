"""seq-JEPA: a sequence of views with the actions between them predicts the next view (arXiv 2505.03176).

Each view goes through a per-view encoder (`model=cnn`, global-average pooled: z_i); the action that led to it
(the relative rotation from the previous view, a quaternion; identity for the first) is projected to
`action_dim` and concatenated to z_i. A small transformer with a learned aggregate token and no positional
embedding reads the tokens: order is known only through the actions, so permuting (view, action) pairs
together leaves the aggregate z_AGG unchanged. An MLP predictor maps [z_AGG ⊕ proj(a_next)] to the EMA-target
embedding of the next view; loss 1 − cosine. The EMA schedule and diagnostics come from `variants/ema_target.py`.

Switches: `variant.actions=false` zeroes every action (same networks: the paper's no-action ablation);
`variant=seq_jepa_pair` is the two-view baseline of equal size (one context view, `seq_len=1`).
Each step draws, per object, `seq_len + 1` of its views in random order (the last is the target).
Probes: the aggregate (`features`: views 0..seq_len-1 in stored order), a single view (`view/...`) and the
concatenated pair of views 0 and 1 (`pair/...`, for the relative-rotation R²), and the last two again on a
random-init copy (`random_init_view/...`, `random_init_pair/...`; the host baselines only `features`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.ema_target import EMATarget, check_ema_config
from variants.nn.cnn import make_cnn

ACTION_DIMS = 4  # a quaternion (w, x, y, z)


# --- rotations ------------------------------------------------------------------------------------
def quat_mul(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of quaternions (w, x, y, z) [..., 4]."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def relative_rotation(q_from: Tensor, q_to: Tensor) -> Tensor:
    """The rotation taking orientation `q_from` to `q_to` (R_to = R_rel · R_from), sign fixed to w >= 0 (q and −q
    are the same rotation; one sign makes it a function a probe can fit)."""
    conj = q_from * torch.tensor([1.0, -1.0, -1.0, -1.0], device=q_from.device, dtype=q_from.dtype)
    rel = quat_mul(q_to, conj)
    return torch.where(rel[..., :1] < 0, -rel, rel)


def sequence_actions(quats: Tensor) -> Tensor:
    """Per view of a sequence [B, L, 4]: the rotation from the previous view (identity for the first)."""
    identity = torch.zeros_like(quats[:, :1])
    identity[..., 0] = 1.0
    return torch.cat([identity, relative_rotation(quats[:, :-1], quats[:, 1:])], 1)


# --- networks -------------------------------------------------------------------------------------
class ViewEncoder(nn.Module):
    """The CNN's feature map, global-average pooled: one embedding per view [B, D]."""

    def __init__(self, cnn: nn.Module):
        super().__init__()
        self.cnn = cnn
        self.dim = cnn.out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn(x).mean(dim=(2, 3))


class Aggregator(nn.Module):
    """[z_i ⊕ proj(a_i)] tokens plus a learned aggregate token through a transformer without positions."""

    def __init__(self, dim: int, action_dim: int, depth: int, heads: int):
        super().__init__()
        self.action_proj = nn.Linear(ACTION_DIMS, action_dim)
        width = dim + action_dim
        self.agg_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, z: Tensor, actions: Tensor) -> Tensor:
        """z [B, L, D], actions [B, L, 4] -> z_AGG [B, D + action_dim]."""
        tokens = torch.cat([z, self.action_proj(actions)], -1)
        tokens = torch.cat([self.agg_token.expand(len(z), -1, -1), tokens], 1)
        return self.norm(self.blocks(tokens)[:, 0])


class NextViewPredictor(nn.Module):
    """MLP: [z_AGG ⊕ proj(a_next)] -> the next view's target embedding."""

    def __init__(self, agg_width: int, action_dim: int, hidden: int, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(agg_width + action_dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, z_agg: Tensor, a_next: Tensor) -> Tensor:
        return self.net(torch.cat([z_agg, a_next], -1))


# --- the variant ----------------------------------------------------------------------------------
@dataclass
class SeqJEPAConfig:
    """seq-JEPA's hyper-parameters (the paper: ResNet-18, 128-d actions, 3 layers × 4 heads; here a small CNN)."""

    name: str = "seq_jepa"
    seq_len: int = 3  # context views per sequence (one more view is the target): at most data.views - 1
    actions: bool = True  # false: every action zeroed (the no-action ablation, same networks)
    action_dim: int = 32
    agg_depth: int = 3
    agg_heads: int = 4
    pred_hidden: int = 256
    ema_start: float = 0.0  # 0 = derived from ema_half_life (see variants/ema_target.py)
    ema_half_life: float = 0.1
    ema_end: float = 1.0
    probe_encoder: str = "online"  # per-view probes read the online encoder (as the paper's), "target" or "both"
    random_init_views: bool = True  # also probe view/pair features of a random-init copy (their baselines)


@dataclass
class SeqJEPAPairConfig(SeqJEPAConfig):
    """The two-view baseline: one context view predicts the other (same networks as seq_jepa)."""

    name: str = "seq_jepa_pair"
    seq_len: int = 1


class SeqJEPA(EMATarget, Variant):
    name = "seq_jepa"
    host = "ssl"
    Config = SeqJEPAConfig
    model_families = ("cnn",)

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        check_ema_config(v, fail)
        views = cfg.data.get("views")
        if views is None:
            fail("data", f"is {cfg.data.name!r}, which has no views per object", "use data=object_views")
        if v.seq_len < 1:
            fail("variant.seq_len", f"is {v.seq_len}: a sequence needs at least one context view",
                 "set variant.seq_len >= 1 (1 = the two-view baseline, variant=seq_jepa_pair)")
        elif views is not None and v.seq_len + 1 > views:
            fail("variant.seq_len", f"is {v.seq_len}, but {v.seq_len} context views plus the one to predict need "
                 f"{v.seq_len + 1} views and data.views is {views}", f"set variant.seq_len <= {views - 1} or data.views >= {v.seq_len + 1}")
        if cls is SeqJEPAPair and v.seq_len != 1:
            fail("variant.seq_len", f"is {v.seq_len} on the two-view baseline", "use variant=seq_jepa for longer sequences")
        for key in ("action_dim", "agg_depth", "agg_heads", "pred_hidden"):
            if v[key] < 1:
                fail(f"variant.{key}", f"is {v[key]}", "use an integer >= 1")
        width = int(cfg.model.channels[-1]) + int(v.action_dim) if cfg.model.get("channels") else None
        if width and v.agg_heads >= 1 and width % v.agg_heads:
            fail("variant.agg_heads", f"({v.agg_heads}) does not divide the token width model.channels[-1] + "
                 f"variant.action_dim ({width})", "pick heads that divide it, or change variant.action_dim")

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v = self.cfg.variant
        encoder = ViewEncoder(make_cnn(self.cfg.model, self.data_spec.channels))
        aggregator = Aggregator(encoder.dim, int(v.action_dim), int(v.agg_depth), int(v.agg_heads))
        predictor = NextViewPredictor(aggregator.width, int(v.action_dim), int(v.pred_hidden), encoder.dim)
        return nn.ModuleDict({"encoder": encoder, "aggregator": aggregator, "predictor": predictor,
                              "target_encoder": self.make_target(encoder)})

    # --- pieces (tested alone) ---
    def conditioned(self, actions: Tensor) -> Tensor:
        """The actions as the networks see them: zeroed when `variant.actions` is off."""
        return actions if bool(self.cfg.variant.actions) else torch.zeros_like(actions)

    def aggregate(self, modules: nn.ModuleDict, views: Tensor, actions: Tensor, encoder: str = "encoder") -> Tensor:
        """views [B, L, C, H, W] with their actions [B, L, 4] -> z_AGG [B, width]."""
        b, length = views.shape[:2]
        z = modules[encoder](views.flatten(0, 1)).reshape(b, length, -1)
        return modules["aggregator"](z, self.conditioned(actions))

    def predict(self, modules: nn.ModuleDict, z_agg: Tensor, a_next: Tensor) -> Tensor:
        """The next view's predicted target embedding from the aggregate and the action leading to it."""
        return modules["predictor"](z_agg, modules["aggregator"].action_proj(self.conditioned(a_next)))

    def draw_order(self, batch_size: int, views: int, device) -> Tensor:
        """Per object, `seq_len + 1` distinct view indices in random order [B, seq_len + 1] (last = target)."""
        order = torch.rand(batch_size, views, generator=self.generator).argsort(dim=1)
        return order[:, : int(self.cfg.variant.seq_len) + 1].to(device)

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        views, quats = batch["views"], batch["quats"]
        order = self.draw_order(views.size(0), views.size(1), views.device)
        picked = views.gather(1, order[(...,) + (None,) * 3].expand(-1, -1, *views.shape[2:]))
        q = quats.gather(1, order[..., None].expand(-1, -1, ACTION_DIMS))
        context, context_q = picked[:, :-1], q[:, :-1]
        with torch.no_grad():
            target = modules["target_encoder"](picked[:, -1])
        z_agg = self.aggregate(modules, context, sequence_actions(context_q))
        pred = self.predict(modules, z_agg, relative_rotation(context_q[:, -1], q[:, -1]))
        cos = F.cosine_similarity(pred, target, dim=-1)
        return {"loss": 1.0 - cos.mean(), "target_std": target.float().std(0).mean()}

    # --- probes ---
    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """The aggregate of views 0..seq_len-1 (stored order, their own actions) [B, 1, width]."""
        n = int(self.cfg.variant.seq_len)
        return self.aggregate(modules, batch["views"][:, :n], sequence_actions(batch["quats"][:, :n]))[:, None]

    def view_features(self, encoder: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Single view 0's embedding [B, 1, D]."""
        return encoder(batch["views"][:, 0])[:, None]

    def pair_features(self, encoder: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Views 0 and 1's embeddings concatenated [B, 1, 2D]: what the relative-rotation probe reads (data=object_views
        serves each object once per ordered view pair, reordered so the pair comes first: `eval.train_clips` > N
        gives the probe several pairs per object)."""
        b = batch["views"].size(0)
        return encoder(batch["views"][:, :2].flatten(0, 1)).reshape(b, 1, -1)

    def extra_features(self, modules: nn.ModuleDict) -> dict:
        out = dict(super().extra_features(modules))
        encoder = self.probed_encoder(modules)
        out["view"] = lambda batch: self.view_features(encoder, batch)
        out["pair"] = lambda batch: self.pair_features(encoder, batch)
        if bool(self.cfg.variant.random_init_views):
            fresh = self.fresh_encoder(modules)
            out["random_init_view"] = lambda batch: self.view_features(fresh, batch)
            out["random_init_pair"] = lambda batch: self.pair_features(fresh, batch)
        return out

    def fresh_encoder(self, modules: nn.ModuleDict) -> nn.Module:
        """The encoder as built from the run's seed (the host's random-init baseline), in eval mode, on the
        modules' device, without moving the run's random stream."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.cfg.seed))
            fresh = self.build("main")
        which = "encoder" if str(self.cfg.variant.probe_encoder) == "online" else "target_encoder"
        return fresh[which].to(next(modules["encoder"].parameters()).device).eval()


class SeqJEPAPair(SeqJEPA):
    name = "seq_jepa_pair"
    Config = SeqJEPAPairConfig


SEQ_JEPA_VARIANTS = (SeqJEPA, SeqJEPAPair)
