"""Model nodes per family: ViT patch embeddings (1-D/2-D/3-D), MLP, CNN; config validation per family."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from orchestrator import registry
from orchestrator.config import compose_run
from orchestrator.entries import ConfigError
from variants.nn.cnn import CNN, make_cnn
from variants.nn.mlp import MLP, make_mlp
from variants.nn.vit import Predictor, TokenGrid, VideoViT, sincos_3d, sincos_positions
from variants.vjepa import VJEPA, VJEPAConfig


@pytest.mark.parametrize(
    ("grid", "x_shape", "tokens"),
    [
        (TokenGrid(frames=4, size=16, patch=8, tubelet=2), (2, 3, 4, 16, 16), 2 * 2 * 2),  # video tubelets
        (TokenGrid(frames=1, size=16, patch=4, tubelet=1, patch_dims=2), (2, 3, 16, 16), 4 * 4),  # image patches
        (TokenGrid(frames=12, size=1, patch=3, tubelet=1, patch_dims=1), (2, 12, 3), 4),  # sequence [B, T, C]
    ],
)
def test_vit_patch_embeddings_give_one_token_per_patch(grid, x_shape, tokens):
    torch.manual_seed(0)
    vit = VideoViT(grid, dim=32, depth=1, heads=2, in_channels=3)
    x = torch.randn(*x_shape)
    assert grid.num_tokens == tokens
    assert vit.embed(x).shape == (2, tokens, 32)
    assert vit(x).shape == (2, tokens, 32)
    keep = torch.tensor([[0, tokens - 1]] * 2)
    assert vit(x, keep).shape == (2, 2, 32)
    pred = Predictor(grid, 32, 16, 1, 2)(vit(x, keep), keep, torch.tensor([[1]] * 2))
    assert pred.shape == (2, 1, 32)


def test_positions_differ_per_token_and_3d_stays_as_before():
    for grid in (TokenGrid(1, 16, 4, 1, patch_dims=2), TokenGrid(12, 1, 3, 1, patch_dims=1), TokenGrid(4, 16, 8, 2)):
        pos = sincos_positions(32, grid)
        assert pos.shape == (grid.num_tokens, 32)
        assert torch.unique(pos, dim=0).shape[0] == grid.num_tokens  # no two tokens share a position
    video = TokenGrid(4, 16, 8, 2)
    assert torch.equal(sincos_positions(32, video), sincos_3d(32, video.shape))
    assert isinstance(VideoViT(video, 32, 1, 2).patch_embed, torch.nn.Conv3d)  # checkpoints keep their keys
    with pytest.raises(ValueError, match="patch_dims"):
        TokenGrid(4, 16, 8, 2, patch_dims=4)


@pytest.mark.parametrize(("depth", "norm"), [(0, "none"), (2, "layernorm"), (3, "batchnorm")])
def test_mlp_maps_rows_to_features(depth, norm):
    mlp = MLP(in_dim=7, hidden_dim=16, depth=depth, out_dim=5, activation="relu", norm=norm)
    assert mlp(torch.randn(4, 7)).shape == (4, 5)
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp.modules()) == depth + 1
    assert make_mlp({"hidden_dim": 8, "depth": 1, "out_dim": 0, "activation": "gelu", "norm": "none"}, 3)(torch.randn(2, 3)).shape == (2, 8)
    with pytest.raises(ValueError, match="activation 'nope'"):
        MLP(3, 4, 1, activation="nope")


def test_cnn_stages_downsample_by_their_strides():
    cnn = CNN(in_channels=2, channels=[8, 16], kernel=3, strides=[2, 2])
    x = torch.randn(3, 2, 32, 32)
    assert cnn(x).shape == (3, 16, 8, 8)
    assert cnn.tokens(x).shape == (3, 64, 16)
    node = {"channels": [4], "kernel": 5, "strides": [1], "activation": "silu", "norm": "groupnorm"}
    assert make_cnn(node, 1)(torch.randn(1, 1, 9, 9)).shape == (1, 4, 9, 9)
    with pytest.raises(ValueError, match="one per stage"):
        CNN(2, [8, 16], strides=[2])


@dataclass
class _AnyModelConfig(VJEPAConfig):
    name: str = "any_model"


class _AnyModel(VJEPA):
    """A throwaway variant accepting every family, so each family's keys are validated."""

    name = "any_model"
    Config = _AnyModelConfig
    model_families = ("vit", "mlp", "cnn")


@pytest.fixture
def any_model():
    registry.variants()[_AnyModel.name] = _AnyModel
    yield ["variant=any_model", "budget.steps=1"]
    del registry.variants()[_AnyModel.name]


def test_each_family_is_a_model_node_with_its_own_keys(any_model):
    mlp = compose_run(any_model + ["model=mlp", "model.hidden_dim=64", "model.depth=3"]).model
    assert (mlp.family, mlp.hidden_dim, mlp.depth, mlp.norm) == ("mlp", 64, 3, "layernorm")
    cnn = compose_run(any_model + ["model=cnn", "model.channels=[8,16]", "model.strides=[2,1]"]).model
    assert (cnn.family, list(cnn.channels), list(cnn.strides), cnn.kernel) == ("cnn", [8, 16], [2, 1], 3)
    vit = compose_run(["budget.steps=1", "model=vit_small"]).model
    assert (vit.family, vit.dim, vit.depth, vit.heads, vit.patch, vit.tubelet, vit.patch_dims) == ("vit", 384, 12, 6, 8, 2, 3)
    with pytest.raises(ConfigError, match="model.hidden_dim"):
        compose_run(any_model + ["model=vit_tiny", "model.hidden_dim=3"])  # a key of another family


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=mlp", "model.norm=groupnorm"], "`model.norm` is 'groupnorm'. Fix: use one of none, layernorm, batchnorm"),
        (["model=mlp", "model.depth=-1"], "`model.depth` is -1"),
        (["model=cnn", "model.strides=[2]"], "`model.strides` is \\[2\\] for 3 stages"),
        (["model=cnn", "model.channels=[]"], "`model.channels` is \\[\\]"),
        (["model=vit_tiny", "model.patch_dims=0"], "`model.patch_dims` is 0"),
        (["model=vit_tiny", "model.family=cnn"], "`model.family` is 'cnn' on a vit node"),
    ],
)
def test_bad_model_keys_fail_with_the_key_and_a_fix(any_model, overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_run(any_model + overrides)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_variant_paired_with_a_family_it_does_not_accept_names_the_choices(model):
    with pytest.raises(ConfigError, match=f"`model` is '{model}' \\({model} family\\), which variant 'vjepa' does not accept.*"
                       "Fix: pick model= one of vit_tiny, vit_small, vit_base, vit_large, vit_huge"):
        compose_run(["variant=vjepa", f"model={model}", "budget.steps=1"])
