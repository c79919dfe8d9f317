"""A plain MLP encoder for vector inputs (tabular rows, linear-JEPA features, RL observations).

Config node `model=mlp`: `hidden_dim`, `depth` (hidden layers), `out_dim` (0 = hidden_dim),
`activation`, `norm`. The input width comes from the data, never from the config.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "identity": nn.Identity}
NORMS = ("none", "layernorm", "batchnorm")


def norm_layer(norm: str, width: int) -> nn.Module:
    """One normalisation of `width` features after each hidden linear layer."""
    if norm == "layernorm":
        return nn.LayerNorm(width)
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm {norm!r}: use one of {', '.join(NORMS)}")


def activation_layer(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation {name!r}: use one of {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """[B, in_dim] -> [B, out_dim]: `depth` blocks of linear, norm, activation, then a linear head.

    depth=0 is a single linear map (linear-JEPA's encoder).
    """

    def __init__(self, in_dim: int, hidden_dim: int, depth: int, out_dim: int = 0, activation: str = "gelu", norm: str = "layernorm",
                 bias: bool = True):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim or hidden_dim
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim, bias=bias), norm_layer(norm, hidden_dim), activation_layer(activation)]
            width = hidden_dim
        layers.append(nn.Linear(width, self.out_dim, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def make_mlp(cfg_model: Any, in_dim: int) -> MLP:
    """An MLP from a `model=mlp` config node (a mapping or an OmegaConf node) and the data's width."""
    return MLP(int(in_dim), int(cfg_model["hidden_dim"]), int(cfg_model["depth"]), int(cfg_model["out_dim"]),
               str(cfg_model["activation"]), str(cfg_model["norm"]))
