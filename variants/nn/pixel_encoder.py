"""Pixel observations for the zero-shot agents (TD-JEPA, FB): a DrQ-style conv encoder over
stacked frames, random-shift augmentation, and the few helpers both variants share.

As in TD-JEPA's pixel experiments (DrQ's encoder): 64 × 64 RGB frames, 3 stacked on the channel
axis (9 channels, oldest first), four 3 × 3 convolutions of 32 channels (the first with stride 2,
no padding), ReLUs, flattened to one vector. The variants' MLPs read that vector (their first layer,
Linear-LayerNorm-Tanh, is DrQ's trunk). Augmentation: pad 4 by edge replication, crop back at a
random integer shift per sample (DrQ), on training batches only.

`variant.obs=pixels` adds one online `encoder` (trained by the representation loss, never by the
actor, as DrQ-v2 does) and its EMA copy `target_encoder`; `encode` is the identity for `obs=state`,
so the proprioceptive path runs exactly the ops it ran before.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from variants.nn.cnn import CNN

FRAMES, SIZE, RGB = 3, 64, 3  # the paper's pixel setting: 3 stacked 64 × 64 RGB frames
STACK_SHAPE = (FRAMES * RGB, SIZE, SIZE)  # what a pixel observation is: uint8 [9, 64, 64]
CHANNELS, KERNEL, STRIDES = (32, 32, 32, 32), 3, (2, 1, 1, 1)  # DrQ's conv stack
PAD = 4  # DrQ's random shift: up to ±4 pixels
OBS_KINDS = ("state", "pixels")
ENCODE_CHUNK = 256  # observations per encoder call when many are encoded at once (zero-shot inference)


class PixelEncoder(nn.Module):
    """uint8 (or 0-255 float) frame stacks [B, 9, 64, 64] -> flat features [B, 32·25·25]."""

    def __init__(self, in_shape: tuple[int, ...] = STACK_SHAPE):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.convs = CNN(self.in_shape[0], CHANNELS, KERNEL, STRIDES, activation="relu", norm="none")
        for conv in self.convs.net:  # DrQ's convolutions are unpadded (CNN pads to keep H / stride)
            if isinstance(conv, nn.Conv2d):
                conv.padding = (0, 0)
        h, w = conv_output_hw(self.in_shape[1:])
        self.out_dim = h * w * CHANNELS[-1]

    def forward(self, frames: Tensor) -> Tensor:
        x = frames.float() / 255.0 - 0.5
        return self.convs(x).flatten(1)


def conv_output_hw(hw: tuple[int, ...]) -> tuple[int, int]:
    """Spatial size after the DrQ stack (64 -> 31 -> 29 -> 27 -> 25)."""
    h, w = (int(s) for s in hw)
    for stride in STRIDES:
        h, w = (h - KERNEL) // stride + 1, (w - KERNEL) // stride + 1
    return h, w


def conv_flops(in_shape: tuple[int, ...] = STACK_SHAPE) -> int:
    """Hand count of one forward of the conv stack for one observation: 2 · MACs of every layer."""
    h, w = (int(s) for s in in_shape[1:])
    flops, width = 0, int(in_shape[0])
    for out, stride in zip(CHANNELS, STRIDES):
        h, w = (h - KERNEL) // stride + 1, (w - KERNEL) // stride + 1
        flops += 2 * h * w * out * width * KERNEL * KERNEL
        width = out
    return flops


def random_shift(frames: Tensor, generator: torch.Generator, pad: int = PAD) -> Tensor:
    """DrQ's augmentation: each sample padded by edge replication and cropped back at its own
    integer shift in [-pad, pad]². Returns a new float tensor; `frames` is left untouched.

    Shifts come from the variant's CPU generator (reproducible, and traceable on the meta device).
    """
    b, _, h, w = frames.shape
    padded = nn.functional.pad(frames.float(), (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(frames.device)
    rows = (shifts[0][:, None] + torch.arange(h, device=frames.device))[:, :, None]  # [B, H, 1]
    cols = (shifts[1][:, None] + torch.arange(w, device=frames.device))[:, None, :]  # [B, 1, W]
    batch = torch.arange(b, device=frames.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # [B, C, H, W]


# --- what TD-JEPA and FB share ------------------------------------------------------------
def uses_pixels(cfg) -> bool:
    return str(cfg.variant.get("obs", "state")) == "pixels"


def check_obs_config(cfg, fail) -> None:
    """`variant.obs` names a known kind and agrees with the data (pixel data serves frame stacks)."""
    obs = str(cfg.variant.get("obs", "state"))
    if obs not in OBS_KINDS:
        fail("variant.obs", f"is {obs!r}", f"use one of {', '.join(OBS_KINDS)}")
        return
    data = cfg.get("data") or {}
    if "pixels" not in data:
        if obs == "pixels":
            fail("variant.obs", f"is pixels, but data {data.get('name')!r} has no frames",
                 "use an exorl_<domain>_<policy> or ogbench_<env> dataset with data.pixels=true")
        return
    if bool(data["pixels"]) != (obs == "pixels"):
        fail("variant.obs", f"is {obs} but data.pixels={bool(data['pixels'])} "
             f"(pixel data serves frame stacks, other data states)",
             "set variant.obs=pixels together with data.pixels=true, or variant.obs=state with data.pixels=false")


class PixelObservations:
    """Mixin for a zero-shot agent: `variant.obs=pixels` adds the shared conv `encoder` (and its EMA copy)
    to the agent's online networks (`state_networks`) and checks the obs/data pairing."""

    state_networks: tuple[str, ...] = ()

    @property
    def online(self) -> tuple[str, ...]:
        return self.state_networks + (("encoder",) if uses_pixels(self.cfg) else ())

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        super().validate_config(cfg, fail)
        check_obs_config(cfg, fail)


def observation_encoders(cfg, spec_inputs: dict) -> tuple[dict[str, nn.Module], int]:
    """({"encoder": PixelEncoder} or {}, width of what the networks read from an observation)."""
    shape = tuple(spec_inputs["observation"])
    if not uses_pixels(cfg):
        return {}, int(shape[-1])
    encoder = PixelEncoder(shape)
    return {"encoder": encoder}, encoder.out_dim


def encode(modules: nn.ModuleDict, observation: Tensor, target: bool = False) -> Tensor:
    """Features of observations: the (target) pixel encoder's, or the states themselves."""
    name = "target_encoder" if target else "encoder"
    return modules[name](observation) if name in modules else observation


def augment(modules: nn.ModuleDict, generator: torch.Generator, *observations: Tensor) -> tuple[Tensor, ...]:
    """Random shifts of each pixel observation (independently); states pass unchanged."""
    if "encoder" not in modules:
        return observations
    return tuple(random_shift(o, generator) for o in observations)


def in_chunks(fn, observations: Tensor, pixels: bool) -> Tensor:
    """fn over observations, ENCODE_CHUNK at a time for pixels (10k frame stacks would otherwise
    make gigabytes of conv activations); states in one call, as before."""
    if not pixels:
        return fn(observations)
    return torch.cat([fn(part) for part in observations.split(ENCODE_CHUNK)])
