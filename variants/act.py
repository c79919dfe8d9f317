"""ACT (arXiv 2304.13705), goal-conditioned, on state observations: the imitation baseline of issue 19.

A transformer reads context tokens (the observation, the goal and, with the CVAE, a style latent z)
and decodes a chunk of k future actions from k learned queries; the loss is L1 on the chunk with
padding past an episode's end masked, plus `kl_weight` · KL of the CVAE posterior (ACT: 10). At
inference z = 0 and, with `temporal_ensemble`, every step's action averages all chunks that cover
it with weights exp(−m·i), i = 0 for the oldest (ACT's scheme); without it a chunk runs open loop.

The chunk size k is the data's (`data.chunk`: the windows the dataset yields, `spec.inputs["actions"]`).
Pieces ACT-JEPA reuses: `ChunkDecoder`, `ACT.context` (the context encoder) and `masked_mean`.
Batch keys: observation [B, 2D] (state ‖ goal), actions [B, k, A], action_mask [B, k], labelled [B]
(0: an episode that may not teach actions; its rows add nothing to the action loss).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from variants.base import DataSpec, Policy, Variant
from variants.nn.rl import gaussian


@dataclass
class ACTConfig:
    name: str = "act"
    hidden: int = 128  # ACT: 512
    heads: int = 4
    layers: int = 2  # context encoder layers
    decoder_layers: int = 2
    ff: int = 512  # ACT: 3200
    cvae: bool = True
    latent: int = 16  # ACT: 32
    kl_weight: float = 10.0
    temporal_ensemble: bool = True
    ensemble_m: float = 0.01


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` [B, k, ...] over the entries `mask` [B, k] keeps (0 when none is kept)."""
    mask = mask.to(values.dtype)
    per_row = values.flatten(2).mean(-1) if values.dim() > 2 else values
    return (per_row * mask).sum() / mask.sum().clamp_min(1.0)


def layer(hidden: int, heads: int, ff: int, decoder: bool = False) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(hidden, heads, ff, dropout=0.0, batch_first=True, norm_first=True)


class ChunkDecoder(nn.Module):
    """k learned queries cross-attending to context tokens, read out to `out_dim` each: ACT's action
    decoder, and ACT-JEPA's predictor of the next observations' embeddings."""

    def __init__(self, k: int, hidden: int, heads: int, ff: int, layers: int, out_dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(k, hidden) * 0.02)
        self.decoder = nn.TransformerDecoder(layer(hidden, heads, ff, decoder=True), layers)
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, memory: Tensor) -> Tensor:
        queries = self.queries.expand(memory.shape[0], -1, -1)
        return self.head(self.decoder(queries, memory))


class Context(nn.Module):
    """The context encoder: [z, observation, goal] tokens through a transformer encoder."""

    def __init__(self, hidden: int, heads: int, ff: int, layers: int):
        super().__init__()
        self.position = nn.Parameter(torch.randn(3, hidden) * 0.02)
        self.trunk = nn.TransformerEncoder(layer(hidden, heads, ff), layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.norm(self.trunk(tokens + self.position))


class TemporalEnsemble:
    """ACT's temporal ensembling for one episode: every chunk predicted so far votes on step t's
    action with weight exp(−m·i), i counting from the oldest prediction that covers t."""

    def __init__(self, m: float):
        self.m = float(m)
        self.chunks: list[tuple[int, Tensor]] = []  # (step it was predicted at, [k, A])

    def add(self, t: int, chunk: Tensor) -> None:
        self.chunks.append((int(t), chunk))

    def action(self, t: int) -> Tensor:
        self.chunks = [(s, c) for s, c in self.chunks if t - s < len(c)]  # chunks that ended can never vote again
        votes = [c[t - s] for s, c in self.chunks if 0 <= t - s]
        if not votes:
            raise ValueError(f"temporal ensemble: no chunk covers step {t}")
        weights = torch.exp(-self.m * torch.arange(len(votes), dtype=votes[0].dtype))
        return (torch.stack(votes) * (weights / weights.sum())[:, None]).sum(0)


def chunk_sizes(spec: DataSpec) -> tuple[int, int, int]:
    """(observation dim D, action dim A, chunk k) of demo windows (observation = state ‖ goal, 2D)."""
    k, action_dim = spec.inputs["actions"]
    return spec.inputs["observation"][0] // 2, action_dim, k


class ACT(Variant, Policy):
    name = "act"
    host = "imitation"
    Config = ACTConfig
    model_families = ("vit", "mlp")  # reads neither: its sizes are its own (`variant.hidden`, ...)
    optim_defaults = {**Variant.optim_defaults, "lr": 1e-4, "warmup_frac": 0.05, "weight_decay": 1e-4,
                      "final_weight_decay": 1e-4}  # ACT: AdamW 1e-5 at width 512 and ~2k epochs; small nets and runs need more

    def __init__(self, cfg, data_spec: DataSpec):
        super().__init__(cfg, data_spec)
        self.obs_dim, self.action_dim, self.k = chunk_sizes(data_spec)
        self.ensembles: dict[int, TemporalEnsemble] = {}  # per batch row of a rollout
        self.open_loop: dict[int, tuple[int, Tensor]] = {}

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        if cfg.data.get("chunk") is None:
            fail("data", f"is {cfg.data.name!r}, which yields no demo windows with action chunks",
                 "use data=manip_cube_single (or a data.path of demos HDF5 / ACT-ALOHA episodes)")
        if int(v.hidden) % int(v.heads):
            fail("variant.hidden", f"is {v.hidden}, not a multiple of variant.heads={v.heads}", "use e.g. hidden=128 heads=4")
        if float(v.ensemble_m) < 0:
            fail("variant.ensemble_m", f"is {v.ensemble_m}", "use m >= 0 (ACT: 0.01)")

    # --- networks -----------------------------------------------------------------------
    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v = self.cfg.variant
        h, heads, ff = int(v.hidden), int(v.heads), int(v.ff)
        modules = {
            "encoder": nn.Sequential(nn.Linear(self.obs_dim, h), nn.GELU(), nn.Linear(h, h)),  # one observation -> token
            "goal_proj": nn.Linear(self.obs_dim, h),
            "context": Context(h, heads, ff, int(v.layers)),
            "action_decoder": ChunkDecoder(self.k, h, heads, ff, int(v.decoder_layers), self.action_dim),
        }
        if v.cvae:
            modules["style_encoder"] = nn.TransformerEncoder(layer(h, heads, ff), 1, enable_nested_tensor=False)
            modules["style_in"] = nn.Linear(self.action_dim, h)
            modules["style_out"] = nn.Linear(h, 2 * int(v.latent))  # mu, log variance
            modules["style_cls"] = nn.Embedding(1, h)
            modules["latent_proj"] = nn.Linear(int(v.latent), h)
        return nn.ModuleDict(modules)

    def context(self, modules: nn.ModuleDict, observation: Tensor, z_token: Tensor | None = None) -> Tensor:
        """Context tokens [B, 3, hidden] of observation = state ‖ goal; z = 0 unless a style token is given."""
        state, goal = observation[..., : self.obs_dim], observation[..., self.obs_dim:]
        obs_token = modules["encoder"](state)
        if z_token is None:
            z_token = torch.zeros_like(obs_token)
            if "latent_proj" in modules:
                z_token = z_token + modules["latent_proj"].bias
        tokens = torch.stack([z_token, obs_token, modules["goal_proj"](goal)], dim=1)
        return modules["context"](tokens)

    def style(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The CVAE posterior's z token and KL, from the observation and the (masked) action chunk."""
        actions = batch["actions"] * batch["action_mask"][..., None]
        cls = modules["style_cls"].weight.expand(actions.shape[0], -1)[:, None]
        state = batch["observation"][..., : self.obs_dim]
        tokens = torch.cat([cls, modules["encoder"](state)[:, None], modules["style_in"](actions)], dim=1)
        mu, logvar = modules["style_out"](modules["style_encoder"](tokens)[:, 0]).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * gaussian(tuple(mu.shape), self.generator, mu)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()
        return modules["latent_proj"](z), kl

    # --- training -----------------------------------------------------------------------
    def action_loss(self, modules: nn.ModuleDict, batch: dict[str, Tensor], memory: Tensor) -> Tensor:
        """L1 on the chunk; padding past the episode and unlabelled rows are masked out."""
        predicted = modules["action_decoder"](memory)
        mask = batch["action_mask"] * batch["labelled"][:, None]
        return masked_mean((predicted - batch["actions"]).abs(), mask)

    def context_for_training(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if not self.cfg.variant.cvae:
            return self.context(modules, batch["observation"]), {}
        z_token, kl = self.style(modules, batch)
        return self.context(modules, batch["observation"], z_token), {"kl": kl}

    def losses(self, modules: nn.ModuleDict, batch: dict[str, Tensor], memory: Tensor, extra: dict) -> dict[str, Tensor]:
        """Every loss term on the context tokens `memory` (ACT-JEPA adds its own); "loss" is their sum."""
        l1 = self.action_loss(modules, batch, memory)
        loss = l1 + float(self.cfg.variant.kl_weight) * extra["kl"] if "kl" in extra else l1
        return {"loss": loss, "action_l1": l1, **extra}

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        memory, extra = self.context_for_training(modules, batch)
        return self.losses(modules, batch, memory, extra)

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """The context tokens at z = 0 [B, 3, hidden]: what the world-model probe reads."""
        return self.context(modules, batch["observation"])

    # --- acting -------------------------------------------------------------------------
    def predict_chunk(self, modules: nn.ModuleDict, observation: Tensor) -> Tensor:
        """Chunks [B, k, A] in [-1, 1] for observations state ‖ goal [B, 2D], at z = 0."""
        return modules["action_decoder"](self.context(modules, observation)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, modules: nn.ModuleDict, observation: Tensor) -> Tensor:
        """Rollout actions from [state, goal, step index] rows (envs/manipulation.GoalObservation);
        each row keeps its own ensemble, restarted when its step index is 0."""
        steps = observation[:, -1].round().long().tolist()
        chunks = self.predict_chunk(modules, observation[:, :-1]).cpu()
        out = []
        for row, t in enumerate(steps):
            if self.cfg.variant.temporal_ensemble:
                if t == 0 or row not in self.ensembles:
                    self.ensembles[row] = TemporalEnsemble(float(self.cfg.variant.ensemble_m))
                self.ensembles[row].add(t, chunks[row])
                out.append(self.ensembles[row].action(t))
            else:
                start, chunk = self.open_loop.get(row, (-math.inf, None))
                if t == 0 or not 0 <= t - start < self.k:
                    start, chunk = t, chunks[row]
                    self.open_loop[row] = (start, chunk)
                out.append(chunk[t - start])
        return torch.stack(out).to(observation.device)
