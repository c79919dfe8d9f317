"""A small 2-D CNN encoder for grids (BEV occupancy, small images, pixel observations).

Config node `model=cnn`: `channels` per stage, `kernel`, `strides` per stage, `activation`, `norm`.
The input channels come from the data. The output is a feature map; `tokens` flattens it to
[B, N, C] so the same probes and predictors as a ViT's read it.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from variants.nn.mlp import activation_layer

CNN_NORMS = ("none", "batchnorm", "groupnorm")


def conv_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if norm == "groupnorm":
        return nn.GroupNorm(1, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm {norm!r}: use one of {', '.join(CNN_NORMS)}")


class CNN(nn.Module):
    """[B, C, H, W] -> [B, channels[-1], H', W']: one conv, norm, activation per stage.

    Padding keeps `H / stride` per stage (rounded up), so a 32×32 grid with strides (2, 2) ends at 8×8.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], kernel: int = 3, strides: Sequence[int] = (),
                 activation: str = "gelu", norm: str = "batchnorm"):
        super().__init__()
        strides = list(strides) or [1] * len(channels)
        if len(strides) != len(channels):
            raise ValueError(f"strides has {len(strides)} entries but channels has {len(channels)}: give one per stage")
        layers: list[nn.Module] = []
        width = in_channels
        for out, stride in zip(channels, strides):
            layers += [nn.Conv2d(width, out, kernel, stride=stride, padding=kernel // 2), conv_norm(norm, out), activation_layer(activation)]
            width = out
        self.out_channels = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def tokens(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, H'·W', C'], one token per output cell."""
        return self.forward(x).flatten(2).transpose(1, 2)


def make_cnn(cfg_model: Any, in_channels: int) -> CNN:
    """A CNN from a `model=cnn` config node and the data's channel count."""
    return CNN(int(in_channels), [int(c) for c in cfg_model["channels"]], int(cfg_model["kernel"]),
               [int(s) for s in cfg_model["strides"]], str(cfg_model["activation"]), str(cfg_model["norm"]))
