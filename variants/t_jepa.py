"""T-JEPA: predict an EMA target encoder's latents of some columns of a table row from others (arXiv 2410.05016).

Each column is a token: a numeric value x becomes w·x + b (its own w, b), a categorical code its own
embedding row, a missing cell (NaN) the column's learned missing token. Per row, a random permutation of
the columns is cut into one context subset and `num_targets` target subsets, all disjoint and of fixed
sizes. The context encoder sees only the context columns; the EMA target encoder sees every column; a
narrow predictor fills the target columns from the context, and the loss is the mean squared error to the
(layer-normed) target latents. `reg_tokens` regularization tokens (constant input times a learned weight,
i.e. learned vectors) join every sequence the encoders see: the paper found them needed against collapse;
`variant.reg_tokens=0` turns them off for the ablation.

The encoder is a transformer of the `model=` ViT family's width, depth and heads (`model=tab_transformer`
is a small one); patch keys are unused. `features` gives the target encoder's column tokens flattened to
one token per row [B, 1, F·D]: the downstream MLP then sees every column's latent, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.ema_target import EMATarget, check_ema_config
from variants.nn.vit import Block, gather_tokens, init_weights


@dataclass
class TJEPAConfig:
    """T-JEPA's hyper-parameters. Mask sizes are shares of the table's columns (at least one column each),
    shrunk if they do not fit: targets first, down to one column, then the context."""

    name: str = "t_jepa"
    context_share: float = 0.4  # columns the context encoder sees
    target_share: float = 0.15  # columns in each target subset
    num_targets: int = 4  # disjoint target subsets per row, as in the paper
    reg_tokens: int = 3  # regularization tokens; 0 = off (the ablation)
    pred_dim: int = 32
    pred_depth: int = 2
    pred_heads: int = 2
    ema_start: float = 0.0  # 0 = derived from ema_half_life (as V-JEPA's); the paper's is 0.996
    ema_half_life: float = 0.1
    ema_end: float = 1.0
    probe_encoder: str = "target"  # which encoder `features` reads: the EMA "target", the "online" one, or "both" (online/<metric>)




# ---------------------------------------------------------------------------- masks
def mask_sizes(columns: int, context_share: float, target_share: float, num_targets: int) -> tuple[int, int]:
    """(context, target) column counts: the configured shares rounded (at least 1), shrunk to fit the row."""
    if columns < num_targets + 1:
        raise ValueError(f"a table of {columns} column(s) cannot hold a context and {num_targets} disjoint target subsets. "
                         f"Fix: lower variant.num_targets to {max(1, columns - 1)} or use a table with more columns")
    context = max(1, round(context_share * columns))
    target = max(1, round(target_share * columns))
    if context + num_targets * target > columns:
        target = max(1, (columns - context) // num_targets)
    context = min(context, columns - num_targets * target)
    return context, target


@dataclass(frozen=True)
class FeatureMasks:
    """Column indices per row: context [B, c] and targets [B, num_targets, t], all disjoint within a row."""

    context: Tensor
    targets: Tensor


def draw_feature_masks(batch: int, columns: int, context: int, target: int, num_targets: int,
                       generator: torch.Generator) -> FeatureMasks:
    """One random permutation of the columns per row, cut into the context and the target subsets."""
    order = torch.rand(batch, columns, generator=generator).argsort(dim=1)
    targets = order[:, context:context + num_targets * target].reshape(batch, num_targets, target)
    return FeatureMasks(order[:, :context].sort(dim=1).values, targets.sort(dim=2).values)


# ---------------------------------------------------------------------------- networks
class FeatureTokenizer(nn.Module):
    """A row [B, F] -> column tokens [B, F, D]: numeric w·x + b, categorical embeddings, NaN -> missing token.

    Categorical columns carry integer codes as floats; all columns share one embedding table (offsets per
    column), so the whole row is tokenised with shape-only operations (the FLOP counter traces it on meta)."""

    def __init__(self, categories: tuple[int, ...], dim: int):
        super().__init__()
        self.columns = len(categories)
        self.weight = nn.Parameter(torch.randn(self.columns, dim) / dim ** 0.5)
        self.bias = nn.Parameter(torch.randn(self.columns, dim) * 0.02)
        self.missing = nn.Parameter(torch.randn(self.columns, dim) * 0.02)
        self.embedding = nn.Embedding(sum(categories) + 1, dim)  # row 0: numeric columns' unused slot
        nn.init.normal_(self.embedding.weight, std=dim ** -0.5)
        offsets = [1 + sum(categories[:j]) for j in range(self.columns)]  # python ints: build may run on meta
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("cardinality", torch.tensor([max(1, c) for c in categories], dtype=torch.long), persistent=False)
        self.register_buffer("is_categorical", torch.tensor([c > 0 for c in categories]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        missing = torch.isnan(x)
        value = torch.nan_to_num(x, nan=0.0)
        numeric = self.weight * value.unsqueeze(-1) + self.bias
        codes = torch.minimum(value.clamp_min(0).long(), self.cardinality - 1)
        index = torch.where(self.is_categorical, codes + self.offsets, torch.zeros_like(codes))
        tokens = torch.where(self.is_categorical.unsqueeze(-1), self.embedding(index), numeric)
        return torch.where(missing.unsqueeze(-1), self.missing.expand_as(tokens), tokens)


class TabularEncoder(nn.Module):
    """Tokeniser, regularization tokens and pre-norm transformer blocks; `keep` [B, K] encodes only those columns.

    Output: [B, R + K, D], the R regularization tokens first."""

    def __init__(self, categories: tuple[int, ...], dim: int, depth: int, heads: int, reg_tokens: int):
        super().__init__()
        self.dim, self.reg = dim, reg_tokens
        self.tokenizer = FeatureTokenizer(categories, dim)
        self.reg_tokens = nn.Parameter(torch.randn(1, reg_tokens, dim) * 0.02)  # constant input × learned weight
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        init_weights(self.blocks)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        tokens = self.tokenizer(x)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        tokens = torch.cat([self.reg_tokens.expand(len(x), -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class ColumnPredictor(nn.Module):
    """Narrow transformer: context tokens (plus each context column's identity) and one query per target
    column (mask token + its identity) in, the target columns' latents out."""

    def __init__(self, columns: int, in_dim: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.column = nn.Parameter(torch.randn(1, columns, dim) * 0.02)  # which column a token is
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, in_dim)
        init_weights(self)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor, reg: int) -> Tensor:
        b = context.size(0)
        column = self.column.expand(b, -1, -1)
        ctx = self.embed(context)
        ctx = torch.cat([ctx[:, :reg], ctx[:, reg:] + gather_tokens(column, context_idx)], dim=1)
        queries = self.mask_token + gather_tokens(column, target_idx)
        x = torch.cat([ctx, queries], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, ctx.size(1):]))


# ---------------------------------------------------------------------------- the variant
class TJEPA(EMATarget, Variant):
    name = "t_jepa"
    host = "ssl"
    Config = TJEPAConfig
    model_families = ("vit",)  # a transformer's dim, depth and heads: `model=tab_transformer` (or any vit_* size)

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        v = cfg.variant
        self.columns = len(data_spec.categories) or data_spec.inputs[data_spec.input_key][0]
        self.categories = tuple(data_spec.categories) or (0,) * self.columns
        self.context, self.target = mask_sizes(self.columns, float(v.context_share), float(v.target_share), int(v.num_targets))

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        for key in ("context_share", "target_share"):
            if not 0.0 < v[key] < 1.0:
                fail(f"variant.{key}", f"is {v[key]}", "use a share of the columns strictly between 0 and 1")
        if v.num_targets < 1:
            fail("variant.num_targets", f"is {v.num_targets}", "use at least 1 target subset (the paper: 4)")
        if v.reg_tokens < 0:
            fail("variant.reg_tokens", f"is {v.reg_tokens}", "use 0 (off) or more regularization tokens")
        if v.pred_dim % v.pred_heads:
            fail("variant.pred_heads", f"({v.pred_heads}) does not divide variant.pred_dim ({v.pred_dim})", "pick heads that divide dim")
        check_ema_config(v, fail, paper_start=0.996)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        m, v = self.cfg.model, self.cfg.variant
        encoder = TabularEncoder(self.categories, int(m.dim), int(m.depth), int(m.heads), int(v.reg_tokens))
        predictor = ColumnPredictor(self.columns, int(m.dim), int(v.pred_dim), int(v.pred_depth), int(v.pred_heads))
        return nn.ModuleDict({"encoder": encoder, "predictor": predictor, "target_encoder": self.make_target(encoder)})

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        x = batch[self.data_spec.input_key]
        reg, n = int(self.cfg.variant.reg_tokens), int(self.cfg.variant.num_targets)
        masks = draw_feature_masks(len(x), self.columns, self.context, self.target, n, self.generator)
        ctx_idx, tgt_idx = masks.context.to(x.device), masks.targets.to(x.device)
        with torch.no_grad():
            latents = modules["target_encoder"](x)[:, reg:]
            latents = F.layer_norm(latents, latents.shape[-1:])
        context = modules["encoder"](x, keep=ctx_idx)
        # the 4 target subsets as 4 predictor passes batched into one: rows repeated per subset
        tgt_flat = tgt_idx.transpose(0, 1).reshape(n * len(x), self.target)
        pred = modules["predictor"](context.repeat(n, 1, 1), ctx_idx.repeat(n, 1), tgt_flat, reg)
        loss = F.mse_loss(pred, gather_tokens(latents.repeat(n, 1, 1), tgt_flat))
        return {"loss": loss, "tokens_context": torch.tensor(float(self.context), device=x.device),
                "tokens_target": torch.tensor(float(n * self.target), device=x.device)}

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """The column tokens (not the regularization tokens: both ablation arms keep one width), flattened."""
        tokens = self.probed_encoder(modules)(batch[self.data_spec.input_key])
        return tokens[:, int(self.cfg.variant.reg_tokens):].flatten(1).unsqueeze(1)
