"""SALT: a frozen pixel-trained teacher replaces V-JEPA's EMA target (arXiv 2509.24317).

Two stages, charged separately against one FLOP budget:
  teacher: a (small) VideoViT learns masked pixel reconstruction under V-JEPA's 3-D
           multiblock masks, with MAE-style per-patch normalised pixel targets.
  student: the teacher is frozen; a student VideoViT sees only context tokens and a narrow
           predictor regresses the teacher's layer-normed latents at masked positions (L1).
No EMA: the target never moves, so the student stage only pays one frozen forward of the
teacher per step, and the teacher can be much smaller than the student.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.nn.ema import frozen_copy
from variants.nn.vit import VIT_SIZES, Predictor, gather_tokens
from variants.vjepa import (
    check_clip_variance_weight,
    check_heads_divide,
    check_masks,
    clip_variance_penalty,
    draw_masks,
    latent_regression_loss,
    make_encoder,
    token_counts,
    token_grid,
    variant_maskers,
    with_clip_variance,
)

L1 = 1.0  # latent loss exponent, as V-JEPA
PIXEL_NORM_EPS = 1e-6


@dataclass
class SALTConfig:
    name: str = "salt"
    teacher_model: str = "vit_tiny"  # a VIT_SIZES preset; the student's size is cfg.model
    teacher_depth: int = 0  # 0 = the preset's
    teacher_dim: int = 0
    teacher_heads: int = 0
    teacher_fraction: float = 0.2  # share of the run's budget spent training the teacher
    # The teacher stage's lr is optim.lr times this. Pixel reconstruction collapses at a student's lr: at 1e-3
    # a teacher's loss returned to 1.0 (each patch's mean) by step 150; at 1e-4..1.5e-4 it fell to 0.69-0.84.
    teacher_lr_scale: float = 0.3
    decoder_dim: int = 96  # pixel decoder of the teacher stage
    decoder_depth: int = 4
    decoder_heads: int = 3
    pred_dim: int = 96  # latent predictor of the student stage
    pred_depth: int = 4
    pred_heads: int = 3
    # Reuse a teacher trained by another run (the `teacher.pt` its teacher stage saved): the
    # run then has only the student stage, and the teacher's cost is reported as inherited.
    teacher_checkpoint: str = ""
    min_context: int = 8  # fewest visible tokens a mask leaves, in both stages (as V-JEPA's)
    mask_temporal_scale: float = 0.5  # share of the time tokens a mask block spans, in both stages (as V-JEPA's)
    clip_variance_weight: float = 0.0  # the student stage's within-clip variance hinge (as V-JEPA's; 0 = off, the paper's)
    clip_variance_floor: float = 0.5


class ViTSize(NamedTuple):
    dim: int
    depth: int
    heads: int


def teacher_size(v) -> ViTSize:
    """The teacher preset with any non-zero override applied."""
    dim, depth, heads = VIT_SIZES[v["teacher_model"]]
    return ViTSize(int(v["teacher_dim"]) or dim, int(v["teacher_depth"]) or depth, int(v["teacher_heads"]) or heads)


def patchify(video: Tensor, tubelet: int, patch: int) -> Tensor:
    """[B, C, T, H, W] -> [B, N, C·t·p·p], tokens in the (t, h, w) raster of VideoViT's Conv3d.

    Each row is flattened as (C, t, p, p), the layout of the conv kernel, so
    `patchify(x) @ conv.weight.flatten(1).T + conv.bias` equals the patch embedding.
    """
    b, c, frames, height, width = video.shape
    x = video.reshape(b, c, frames // tubelet, tubelet, height // patch, patch, width // patch, patch)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # B, T', H', W', C, t, p, p
    return x.reshape(b, -1, c * tubelet * patch * patch)


def normalize_patches(patches: Tensor) -> Tensor:
    """Each tubelet's pixels to zero mean, unit std (MAE/VideoMAE targets: sharper than raw pixels)."""
    mean = patches.mean(dim=-1, keepdim=True)
    std = patches.std(dim=-1, keepdim=True, correction=0)
    return (patches - mean) / (std + PIXEL_NORM_EPS)


def masked_pixel_loss(pred: Tensor, pixel_targets: Tensor, target_idx: Tensor) -> Tensor:
    """MSE on the masked tubelets only; visible ones would be a copy task."""
    return F.mse_loss(pred.float(), gather_tokens(pixel_targets, target_idx).float())


@functools.lru_cache(maxsize=2)
def load_teacher_checkpoint(path: str) -> dict:
    """Cached: validation, planning and training all ask for the same file."""
    return torch.load(path, map_location="cpu", weights_only=True)


def check_teacher_checkpoint(cfg, fail) -> None:
    """A reused teacher must exist, be a SALT teacher, and cut clips into the same tubelets."""
    path = Path(cfg.variant.teacher_checkpoint)
    if not path.is_file():
        fail("variant.teacher_checkpoint", f"points at {str(path)!r}, which does not exist",
             "run the teacher sweep first (its runs save <storage>/<sweep>/stages/<run>/teacher.pt) or fix the path")
    saved = load_teacher_checkpoint(str(path))
    if saved.get("stage") != "teacher" or saved.get("config", {}).get("variant", {}).get("name") != "salt":
        fail("variant.teacher_checkpoint", f"({path}) is not a SALT teacher stage", "point it at a teacher.pt saved by a SALT run")
    model = saved["config"]["model"]
    if (model["patch"], model["tubelet"]) != (cfg.model.patch, cfg.model.tubelet):
        fail("variant.teacher_checkpoint", f"was trained with patch {model['patch']}/tubelet {model['tubelet']}",
             f"set model.patch={model['patch']} model.tubelet={model['tubelet']} so student and teacher tokens align")


class SALT(Variant):
    name = "salt"
    host = "ssl"
    Config = SALTConfig
    stages = ("teacher", "student")
    budget_keys = ("teacher_fraction",)

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        self.grid = token_grid(cfg, data_spec)  # teacher and student share tubelets, so token i is the same region
        self.maskers = variant_maskers(cfg, self.grid)
        self.reused_teacher = load_teacher_checkpoint(cfg.variant.teacher_checkpoint) if cfg.variant.teacher_checkpoint else None
        if self.reused_teacher is not None:
            self.stages = ("student",)
            self.inherited = {"teacher_flops": float(self.reused_teacher["flops"]),
                              **{f"teacher/{k}": v for k, v in self.reused_teacher["metrics"].items() if k.startswith("probe_acc")}}

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        if not 0.0 < v.teacher_fraction < 1.0:
            fail("variant.teacher_fraction", f"is {v.teacher_fraction}", "use a share strictly between 0 and 1, e.g. 0.2")
        if v.teacher_lr_scale <= 0:
            fail("variant.teacher_lr_scale", f"is {v.teacher_lr_scale}", "use a positive multiplier of optim.lr, e.g. 0.1")
        if v.teacher_model not in VIT_SIZES:
            fail("variant.teacher_model", f"is {v.teacher_model!r}", f"use one of {', '.join(VIT_SIZES)}")
        check_heads_divide(v, ("decoder", "pred"), fail)
        check_clip_variance_weight(v, fail)
        check_masks(cfg, fail)
        if v.teacher_checkpoint:
            check_teacher_checkpoint(cfg, fail)
            return
        stages = list(cfg.train.get("stages") or [])
        if stages and "teacher" not in stages:
            fail("train.stages", f"is {stages}: a student needs a teacher", "add teacher to train.stages, or set "
                 "variant.teacher_checkpoint to a teacher.pt another run saved")
        size = teacher_size(v)
        if size.dim % size.heads:
            fail("variant.teacher_heads", f"({size.heads}) does not divide the teacher dim ({size.dim})",
                 "set variant.teacher_heads / variant.teacher_dim so heads divide dim")


    def stage_fraction(self, stage: str) -> float:
        fraction = float(self.cfg.variant.teacher_fraction)
        if stage == "teacher":
            return fraction
        if stage == "student":
            return 1.0 - fraction
        raise ValueError(f"SALT has stages {self.stages}, not {stage!r}")

    # --- networks ---------------------------------------------------------------------
    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        if stage == "teacher":
            return self.build_teacher()
        if stage == "student":
            return self.build_student(previous)
        raise ValueError(f"SALT has stages {self.stages}, not {stage!r}")

    def build_teacher(self) -> nn.ModuleDict:
        v, channels = self.cfg.variant, self.data_spec.channels
        teacher = make_encoder(teacher_size(v), self.grid, channels)
        pixels_per_token = channels * self.grid.tubelet * self.grid.patch**2
        decoder = Predictor(self.grid, teacher.dim, int(v.decoder_dim), int(v.decoder_depth), int(v.decoder_heads),
                            out_dim=pixels_per_token)
        return nn.ModuleDict({"teacher": teacher, "decoder": decoder})

    def build_student(self, previous: nn.ModuleDict | None) -> nn.ModuleDict:
        """Student + predictor, and a frozen copy of the trained teacher (kept here so checkpoints hold it)."""
        if previous is None and self.reused_teacher is not None:
            previous = nn.ModuleDict({"teacher": self.rebuild_reused_teacher()})
        if previous is None or "teacher" not in previous:
            raise ValueError(
                "SALT stage 'student' needs the trained teacher from stage 'teacher', but got "
                f"{'nothing' if previous is None else sorted(previous.keys())}. "
                "Fix: run both stages (keep variant.teacher_fraction between 0 and 1)"
            )
        v = self.cfg.variant
        teacher = frozen_copy(previous["teacher"]).eval()
        student = make_encoder(self.cfg.model, self.grid, self.data_spec.channels)
        predictor = Predictor(self.grid, student.dim, int(v.pred_dim), int(v.pred_depth), int(v.pred_heads),
                              out_dim=teacher.dim)
        return nn.ModuleDict({"student": student, "predictor": predictor, "teacher": teacher})

    def rebuild_reused_teacher(self) -> nn.Module:
        """The saved teacher, with the architecture of the run that trained it."""
        saved = self.reused_teacher
        teacher = make_encoder(teacher_size(saved["config"]["variant"]), self.grid, self.data_spec.channels)
        prefix = "teacher."
        weights = {k[len(prefix):]: v for k, v in saved["modules"].items() if k.startswith(prefix)}
        if next(teacher.parameters()).device.type != "meta":
            teacher.load_state_dict(weights)
        return teacher

    # --- losses -----------------------------------------------------------------------
    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        video = batch[self.data_spec.input_key]
        if stage == "teacher":
            losses, counts = self.pixel_losses(modules, video)
            total = {"loss": torch.stack(losses).mean()}
        elif stage == "student":
            losses, penalty, counts = self.latent_losses(modules, video)
            total = with_clip_variance(torch.stack(losses).mean(), penalty, self.cfg.variant)
        else:
            raise ValueError(f"SALT has stages {self.stages}, not {stage!r}")
        return {**total, "loss_short": losses[0].detach(), "loss_long": losses[1].detach(), **counts}

    def pixel_losses(self, modules: nn.ModuleDict, video: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Teacher stage: reconstruct the normalised pixels of masked tubelets from visible ones.

        Returns the loss per mask family and the token counts the masks left (`token_counts`)."""
        pixels = normalize_patches(patchify(video, self.grid.tubelet, self.grid.patch))
        losses = []
        pairs = draw_masks(self.maskers, video, self.generator)
        for ctx, tgt in pairs:
            pred = modules["decoder"](modules["teacher"](video, keep=ctx), ctx, tgt)
            losses.append(masked_pixel_loss(pred, pixels, tgt))
        return losses, token_counts(pairs, video.device)

    def latent_losses(self, modules: nn.ModuleDict, video: Tensor) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
        """Student stage: predict the frozen teacher's layer-normed latents of masked tubelets.

        Returns the loss per mask family, the student's context `clip_variance_penalty` (mean over the
        families) and the token counts the masks left (`token_counts`)."""
        target = self.teacher_targets(modules["teacher"], video)
        losses, spread = [], []
        pairs = draw_masks(self.maskers, video, self.generator)
        for ctx, tgt in pairs:
            context = modules["student"](video, keep=ctx)
            pred = modules["predictor"](context, ctx, tgt)
            losses.append(latent_regression_loss(pred, gather_tokens(target, tgt), L1))
            spread.append(clip_variance_penalty(context, ctx, self.grid.num_tokens, float(self.cfg.variant.clip_variance_floor)))
        return losses, torch.stack(spread).mean(), token_counts(pairs, video.device)

    @staticmethod
    def teacher_targets(teacher: nn.Module, video: Tensor) -> Tensor:
        """The frozen teacher on the full clip: no graph, eval mode (the probe may have flipped it to train)."""
        teacher.eval()
        with torch.no_grad():
            target = teacher(video)
            return F.layer_norm(target, target.shape[-1:])

    def param_groups(self, modules: nn.ModuleDict, stage: str) -> list[dict]:
        """The teacher stage's groups run at `variant.teacher_lr_scale` times the scheduled lr."""
        groups = super().param_groups(modules, stage)
        if stage == "teacher":
            for group in groups:
                group["lr_scale"] = group.get("lr_scale", 1.0) * float(self.cfg.variant.teacher_lr_scale)
        return groups

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """The student's tokens once it exists, else the teacher's (a teacher-only evaluation)."""
        encoder = modules["student"] if "student" in modules else modules["teacher"]
        return encoder(batch[self.data_spec.input_key])
