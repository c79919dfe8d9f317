"""T-JEPA on tables: feature-subset masks, the column tokeniser, the rank metric against a planted collapse,
splits, every bad-CSV case (`error: ... Fix:` naming the column or line), and one run through the loop."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs import tabular
from orchestrator import registry
from orchestrator.config import compose_run
from orchestrator.datasets import DataError
from orchestrator.evaluate.base import Features
from orchestrator.evaluate.feature_stats import FeatureStats
from orchestrator.tabular_datasets import load_table, table_of
from orchestrator.train import launch
from variants.t_jepa import (
    FeatureTokenizer,
    TabularEncoder,
    draw_feature_masks,
    mask_sizes,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["variant=t_jepa", "model=tab_transformer", "budget.steps=1"]


# ---------------------------------------------------------------------------- masks
@pytest.mark.parametrize(("columns", "sizes"), [(30, (12, 4)), (61, (24, 9)), (10, (4, 1)), (5, (1, 1))])
def test_masks_are_disjoint_feature_subsets_of_the_configured_sizes(columns, sizes):
    context, target = mask_sizes(columns, 0.4, 0.15, 4)
    assert (context, target) == sizes and context + 4 * target <= columns  # shrunk to fit when the shares do not
    masks = draw_feature_masks(32, columns, context, target, 4, torch.Generator().manual_seed(0))
    assert masks.context.shape == (32, context) and masks.targets.shape == (32, 4, target)
    for row in range(32):
        subsets = [masks.context[row].tolist()] + [t.tolist() for t in masks.targets[row]]
        flat = [c for s in subsets for c in s]
        assert len(set(flat)) == len(flat)  # context and every target subset pairwise disjoint
        assert all(0 <= c < columns for c in flat)
    assert len({tuple(r) for r in masks.context.tolist()}) > 1  # drawn per row, not one subset for the batch


def test_a_table_too_narrow_for_the_target_subsets_is_refused():
    with pytest.raises(ValueError, match="variant.num_targets"):
        mask_sizes(4, 0.4, 0.15, 4)


# ---------------------------------------------------------------------------- tokeniser
def test_numeric_and_categorical_columns_round_trip_through_the_tokeniser():
    torch.manual_seed(0)
    cats = (0, 3, 0, 5)
    tok = FeatureTokenizer(cats, dim=8)
    x = torch.tensor([[0.5, 2.0, -1.25, 4.0], [3.0, 0.0, 0.0, 1.0], [-2.0, 1.0, 7.5, 3.0]])
    with torch.no_grad():
        tokens = tok(x)
    assert tokens.shape == (3, 4, 8)
    for j in (0, 2):  # numeric: token = w·x + b, so x comes back by projecting on w
        w, b = tok.weight[j].detach(), tok.bias[j].detach()
        recovered = (tokens[:, j] - b) @ w / (w @ w)
        assert torch.allclose(recovered, x[:, j], atol=1e-5)
    table = tok.embedding.weight.detach()
    for j, n in ((1, 3), (3, 5)):  # categorical: the nearest of the column's own embedding rows is the code
        rows = table[tok.offsets[j]:tok.offsets[j] + n]
        assert torch.equal(torch.cdist(tokens[:, j], rows).argmin(1), x[:, j].long())
    assert not torch.allclose(tokens[0, 1], tokens[1, 1])  # different codes, different tokens


def test_missing_values_become_the_columns_learned_token():
    torch.manual_seed(0)
    encoder = TabularEncoder((0, 3, 0), dim=8, depth=1, heads=2, reg_tokens=2)
    x = torch.tensor([[float("nan"), 1.0, 0.5], [0.2, float("nan"), float("nan")]])
    tokens = encoder.tokenizer(x)
    assert torch.equal(tokens[0, 0], encoder.tokenizer.missing[0]) and torch.equal(tokens[1, 1], encoder.tokenizer.missing[1])
    out = encoder(x)
    assert out.shape == (2, 2 + 3, 8) and torch.isfinite(out).all()
    out.sum().backward()
    assert encoder.tokenizer.missing.grad[0].abs().sum() > 0  # the missing token is learned
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------- the rank metric
def test_rank_metric_separates_a_planted_collapsed_encoder_from_a_random_one():
    torch.manual_seed(0)
    x = torch.randn(300, 12)
    random_enc = TabularEncoder((0,) * 12, dim=16, depth=2, heads=2, reg_tokens=0)
    collapsed = TabularEncoder((0,) * 12, dim=16, depth=2, heads=2, reg_tokens=0)
    with torch.no_grad():
        collapsed.tokenizer.weight.zero_()  # ignores its input: every row gets the same tokens
        feats = {"random": random_enc(x).flatten(1).unsqueeze(1), "collapsed": collapsed(x).flatten(1).unsqueeze(1)}
    one_direction = feats["random"][:, :, :1] * torch.randn(1, 1, feats["random"].shape[-1])  # rank-1 features
    cfg = OmegaConf.create({"seed": 0, "eval": {"collapse_rank_frac": 0.05}})
    score = {k: FeatureStats().score(Features(v[:200]), Features(v[200:]), None, cfg)
             for k, v in {**feats, "one_direction": one_direction}.items()}
    assert score["random"]["feature_rank"] > 20 and score["random"]["feature_collapsed"] == 0.0
    assert score["collapsed"]["feature_rank"] < 1.5 and score["collapsed"]["feature_collapsed"] == 1.0
    assert score["one_direction"]["feature_rank"] < 1.5 and score["one_direction"]["feature_collapsed"] == 1.0


# ---------------------------------------------------------------------------- tables and splits
def test_splits_are_fixed_per_seed_and_standardised_on_train_only():
    table = tabular.bundled("breast_cancer")
    a, b, c = (tabular.split_table(table, seed) for seed in (0, 0, 1))
    assert np.array_equal(a["val"].x, b["val"].x) and not np.array_equal(a["val"].x, c["val"].x)
    assert sum(len(s.y) for s in a.values()) == len(table.y)
    assert np.allclose(a["train"].x.mean(0), 0, atol=1e-5) and np.allclose(a["train"].x.std(0), 1, atol=1e-3)
    assert not np.allclose(a["val"].x.mean(0), 0, atol=1e-3)  # val/test scaled by train's statistics, not their own


def test_generated_tables_have_categorical_redundant_and_noise_columns():
    table = tabular.generated("classification", n_samples=300, n_informative=6, n_redundant=4, n_noise=3, n_categorical=2)
    assert table.categories[:2] == [5, 5] and table.categories[2:] == [0] * 11
    assert [c.split("_")[0] for c in table.columns].count("noise") == 3
    raw = tabular.split_table(table, 0)["train"].raw
    assert raw.shape[1] == 2 * 5 + 11  # categoricals one-hot for the raw-feature baseline


def test_digits_drops_its_constant_pixel_columns_with_a_warning():
    cfg = compose_run(TINY + ["data=digits"])
    table = table_of(cfg.data)
    assert len(table.columns) == 61 and "pixel_0_0" not in table.columns
    assert any("constant" in w and "pixel_0_0" in w for w in table.warnings)


# ---------------------------------------------------------------------------- a user's CSV
def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def csv_cfg(path: Path, target: str = "y", *extra: str):
    return compose_run(TINY + ["data=csv", f"data.path={path}", f"data.target={target}", *extra])


def good_rows(n: int = 60) -> str:
    rng = np.random.default_rng(0)
    lines = ["a,colour,b,y"]
    for i in range(n):
        a = rng.normal()
        colour = ["red", "green", "blue"][i % 3]
        b = "" if i % 10 == 3 else f"{rng.normal():.3f}"  # some missing cells
        lines.append(f"{a:.3f},{colour},{b},{int(a > 0)}")
    return "\n".join(lines) + "\n"


def test_a_csvs_column_types_are_inferred_and_reported(tmp_path, capsys):
    path = write(tmp_path / "t.csv", good_rows())
    cfg = csv_cfg(path, "y", "data.categorical=[a]")
    registry.check_data(cfg.data)
    table = table_of(cfg.data)
    assert table.columns == ["a", "colour", "b"] and table.categories[1] == 3 and table.categories[2] == 0
    assert table.categories[0] > 3  # named in data.categorical: numeric text read as categories
    assert table.num_classes == 2 and np.isnan(table.x[:, 2]).sum() == 6
    err = capsys.readouterr().err
    assert "column 'colour': categorical, 3 categories" in err and "column 'b': numeric, 6 missing cell(s)" in err
    assert "target 'y': classification (2 classes)" in err
    rows = load_table(cfg.data, "train")
    assert set(rows[0]) == {"x", "raw", "label"} and torch.isnan(rows.x).any()  # missing cells reach the model as NaN
    assert not torch.isnan(rows.raw).any()


def test_a_mostly_text_column_is_categorical(tmp_path):
    lines = ["kind,v,y"] + [f"{'7' if i == 0 else 'abc'[i % 3]},{i},{i % 2}" for i in range(40)]
    table = table_of(csv_cfg(write(tmp_path / "t.csv", "\n".join(lines) + "\n")).data)
    assert table.categories[0] == 4  # '7', 'a', 'b', 'c'


@pytest.mark.parametrize(("name", "text", "target", "match"), [
    ("bad_cell", "\n".join(["a,b,y"] + [f"{i},{'12x' if i == 30 else i * 2},{i % 2}" for i in range(40)]) + "\n", "y",
     r"column 'b' is numeric in 39 of 40 cells but row 31 \(file line 32\) holds '12x'.*Fix: correct that cell"),
    ("no_target", "a,b\n1,2\n3,4\n", "price", r"data.target: no column 'price'.*columns: a, b.*Fix: set data.target"),
    ("empty", "", "y", r"is empty\. Fix: point data.path at a CSV"),
    ("header_only", "a,b,y\n", "y", r"has a header but no rows\. Fix:"),
    ("ragged", "a,b,y\n1,2,0\n3,4\n5,6,1\n", "y", r"line 3: 2 fields, but the header has 3 \(a, b, y\)\. Fix:"),
    ("too_long", "a,b,y\n1,2,0\n3,4,1,9\n", "y", r"line 3: 4 fields, but the header has 3"),
])
def test_each_bad_csv_is_an_error_naming_the_column_or_line(tmp_path, name, text, target, match):
    cfg = csv_cfg(write(tmp_path / f"{name}.csv", text), target)
    with pytest.raises(DataError, match=match):
        registry.check_data(cfg.data)


def test_a_constant_csv_column_is_dropped_with_a_warning(tmp_path, capsys):
    lines = ["a,same,y"] + [f"{i},5,{i % 2}" for i in range(30)]
    cfg = csv_cfg(write(tmp_path / "c.csv", "\n".join(lines) + "\n"))
    registry.check_data(cfg.data)
    assert table_of(cfg.data).columns == ["a"]
    assert "warning: data=csv: dropped 1 constant column(s): 'same'" in capsys.readouterr().err


def test_jepa_run_on_a_bad_csv_prints_error_and_fix_and_exits_2(tmp_path):
    path = write(tmp_path / "bad.csv", "\n".join(["a,b,y"] + [f"{i},{'oops' if i == 5 else i},{i % 2}" for i in range(40)]) + "\n")
    done = subprocess.run([str(Path(sys.executable).parent / "jepa"), "run", *TINY, "data=csv", f"data.path={path}", "data.target=y"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error:" in done.stderr and "column 'b'" in done.stderr and "row 6" in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- through the loop
def test_a_miniature_run_on_a_users_csv_trains_and_scores_against_both_baselines(ray_session, tmp_path, data_root):
    path = write(tmp_path / "t.csv", good_rows(120))
    cfg = compose_run(["variant=t_jepa", "model=tab_transformer", "data=csv", f"data.path={path}", "data.target=y",
                       "variant.reg_tokens=2", "variant.num_targets=2", "budget.steps=4", "train.batch_size=16", "train.log_every=2",
                       "eval.epochs=2", f"storage={tmp_path}", "sweep=tjepa", "data.missing_frac=0.05"])
    metrics = launch(cfg, "tjepa-run")
    assert metrics["step"] == 4 and metrics["final"]
    for key in ("mlp_acc_label", "mlp_acc_label/raw_input", "mlp_acc_label/random_init", "feature_rank",
                "feature_rank/random_init", "feature_rank/raw_input"):
        assert np.isfinite(metrics[key]), key
    assert 0.0 <= metrics["mlp_acc_label"] <= 1.0
    assert metrics["tokens_context"] == 1 and metrics["tokens_target"] == 2  # 3 columns: 1 context, 2 targets of 1


# ---------------------------------------------------------------------------- the report's table
def test_the_report_table_has_one_row_per_dataset_with_both_arms_and_raw_counted_once_per_seed():
    import polars as pl

    from orchestrator.report.panels.tabular import tabular_table

    runs = pl.DataFrame({
        "data.name": ["wine"] * 4 + ["diabetes"] * 4, "variant.reg_tokens": [0, 3, 0, 3] * 2, "seed": [0, 0, 1, 1] * 2,
        "mlp_acc_label": [0.9, 0.95, 0.8, 0.85, None, None, None, None],
        "mlp_acc_label/raw_input": [0.9, 0.9, 0.7, 0.7, None, None, None, None],
        "mlp_rmse_target": [None] * 4 + [50.0, 60.0, 52.0, 62.0],
        "mlp_rmse_target/raw_input": [None] * 4 + [55.0, 55.0, 55.0, 55.0],
        "feature_rank": [10.0, 12.0, 10.0, 12.0, 5.0, 6.0, 5.0, 6.0],
    })
    table = tabular_table(runs, ["mlp_acc_label", "mlp_rmse_target"], "variant.reg_tokens", "feature_rank")
    rows = {r["dataset"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"wine", "diabetes"}
    assert rows["wine"]["raw features"] == "0.8 ± 0.1"  # two seeds, not four copies
    assert rows["wine"]["margin over raw (reg_tokens=3)"] == "0.1 ± 0.05"
    assert rows["diabetes"]["metric"] == "mlp_rmse_target"
    assert rows["diabetes"]["margin over raw (reg_tokens=0)"] == "4 ± 1"  # RMSE: raw minus trained, positive = better
    assert rows["diabetes"]["feature_rank (reg_tokens=3)"] == "6 ± 0"
