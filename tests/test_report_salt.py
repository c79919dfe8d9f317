"""Report panels for SALT sweeps (IsoFLOP, teacher quality, Pareto per method, FLOP cost) on planted data.

No Ray, no training: runs are written straight into a ResultsStore with values whose
answers are known (best teacher fraction per budget, which method wins each metric).
"""

from __future__ import annotations

import math

import pytest
from scipy.stats import linregress

from orchestrator.report import write_report
from orchestrator.report.markdown import format_value
from orchestrator.results import ResultsStore

SWEEP = "salt"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BUDGETS = (1e15, 1e16, 1e17)
FRACTIONS = (0.1, 0.3, 0.5)
SEEDS = (0, 1, 2)
BEST_FRACTION = {1e15: 0.1, 1e16: 0.3, 1e17: 0.5}  # planted optimum, moving with the budget
TEACHER_MODELS = ("vit_tiny", "vit_small")
TEACHER_COST = 4e14  # FLOPs of a teacher trained in another run and reused
SALT_MEASURED, VJEPA_MEASURED, REUSE_MEASURED = 0.97, 0.99, 0.95  # measured FLOPs / nominal budget

PANELS = {
    "isoflop": {"budget": "budget.flops", "fraction": "variant.teacher_fraction", "y": "probe_acc"},
    "teacher_quality": {"teacher_y": "teacher/probe_acc", "y": "probe_acc", "group": "variant.teacher_model"},
    "pareto": {"by": "variant.name", "ys": ["probe_acc_shape", "probe_acc_motion"], "x": "flops_total"},
    "cost": {"teacher_flops": "teacher_flops"},
}


# ---- planted values ---------------------------------------------------------------


def _peak(budget: float) -> float:
    return 0.6 + 0.05 * math.log10(budget / 1e15)


def _student_acc(budget: float, fraction: float, seed: int) -> float:
    return _peak(budget) - (fraction - BEST_FRACTION[budget]) ** 2 + 0.001 * seed


def _teacher_acc(budget: float, fraction: float, seed: int) -> float:
    return 0.3 + 0.1 * fraction + 0.02 * math.log10(budget / 1e15) + 0.003 * seed


def _salt_grid():
    for budget in BUDGETS:
        for fraction in FRACTIONS:
            for seed in SEEDS:
                yield budget, fraction, seed


# ---- synthetic store -----------------------------------------------------------------


def _write_run(store: ResultsStore, run_id: str, config: dict, metrics: dict[str, float], flops: float,
               status: str = "finished") -> None:
    variant = config["variant"]["name"]
    store.record_run(run_id, sweep=SWEEP, variant=variant, stage="student", config=config, status="running")
    rows = [{"step": 1, "flops": flops, "wall_s": 1.0, "metric": name, "value": v} for name, v in metrics.items()]
    store.append_metrics(run_id, SWEEP, rows)
    if status != "running":
        store.record_run(run_id, sweep=SWEEP, variant=variant, stage="student", config=config, status=status)


def _salt_config(budget: float, seed: int, **variant) -> dict:
    return {"variant": {"name": "salt", **variant}, "budget": {"flops": budget}, "seed": seed}


def _write_salt_runs(store: ResultsStore) -> None:
    """SALT trained end to end: wins on shape, loses on motion; half log teacher_flops = 0."""
    for index, (budget, fraction, seed) in enumerate(_salt_grid()):
        acc = _student_acc(budget, fraction, seed)
        metrics = {
            "probe_acc": acc, "probe_acc_shape": acc + 0.05, "probe_acc_motion": acc - 0.1, "loss": 1.0 - acc,
            "teacher/probe_acc": _teacher_acc(budget, fraction, seed), "teacher/loss": 1.0,
        }
        if index % 2:
            metrics["teacher_flops"] = 0.0
        config = _salt_config(budget, seed, teacher_fraction=fraction, teacher_model=TEACHER_MODELS[index % 2])
        _write_run(store, f"salt-{budget:.0e}-f{fraction}-s{seed}", config, metrics, budget * SALT_MEASURED)


def _reuse_accs(budget: float) -> tuple[float, float]:
    """(teacher, student) probe accuracy of a reused-teacher run: a student far above any fraction's."""
    return 0.5, 0.95


def _write_reuse_runs(store: ResultsStore) -> None:
    """Students of a teacher trained elsewhere, logging its cost and probe as inherited metrics.

    Their config still holds the default teacher_fraction, which split no budget of
    theirs: the IsoFLOP panel must leave them out (else 0.2 would win every budget).
    """
    for budget in BUDGETS:
        teacher, student = _reuse_accs(budget)
        metrics = {
            "probe_acc": student, "probe_acc_shape": _peak(budget) - 0.05, "probe_acc_motion": _peak(budget) - 0.25,
            "teacher/probe_acc": teacher, "teacher_flops": TEACHER_COST,
        }
        config = _salt_config(budget, 0, teacher_fraction=0.2, teacher_model="vit_small", teacher_checkpoint="t.pt")
        _write_run(store, f"reuse-{budget:.0e}", config, metrics, budget * REUSE_MEASURED)


def _write_vjepa_runs(store: ResultsStore) -> None:
    """The baseline: behind SALT on shape, ahead on motion, and never a teacher_flops metric."""
    for budget in BUDGETS:
        for seed in SEEDS:
            acc = _peak(budget) + 0.001 * seed
            metrics = {"probe_acc": acc - 0.02, "probe_acc_shape": acc - 0.02, "probe_acc_motion": acc, "loss": 0.5}
            config = {"variant": {"name": "vjepa"}, "budget": {"flops": budget}, "seed": seed}
            _write_run(store, f"vjepa-{budget:.0e}-s{seed}", config, metrics, budget * VJEPA_MEASURED)


def _write_unfinished_runs(store: ResultsStore) -> None:
    """Would move the optimum and the head-to-head if panels used runs that did not finish."""
    metrics = {"probe_acc": 0.99, "probe_acc_shape": 0.99, "probe_acc_motion": 0.99, "teacher/probe_acc": 0.1}
    config = _salt_config(1e15, 9, teacher_fraction=0.5, teacher_model="vit_tiny")
    _write_run(store, "salt-running", config, metrics, 1e15 * SALT_MEASURED, status="running")
    _write_run(store, "salt-stopped", {**config, "seed": 8}, metrics, 1e15 * SALT_MEASURED, status="stopped")


def _store_with_runs(root) -> ResultsStore:
    store = ResultsStore(root)
    _write_salt_runs(store)
    _write_reuse_runs(store)
    _write_vjepa_runs(store)
    _write_unfinished_runs(store)
    return store


@pytest.fixture()
def salt_root(tmp_path):
    store = _store_with_runs(tmp_path)
    store.save_sweep_spec(SWEEP, {"name": SWEEP, "report": {"group": "variant.name", **PANELS}})
    return tmp_path


def _report_with(root, report_section: dict) -> str:
    ResultsStore(root).save_sweep_spec(SWEEP, {"name": SWEEP, "report": report_section})
    return write_report(root, SWEEP).read_text()


# ---- reading the Markdown ---------------------------------------------------------------


def _table_after(text: str, header_start: str) -> list[dict[str, str]]:
    """Rows of the first Markdown table whose header line starts with header_start."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return rows


# ---- tests --------------------------------------------------------------------------------


def test_every_panel_writes_its_png_and_links_it(salt_root):
    text = write_report(salt_root, SWEEP).read_text()
    for image in ("isoflop_probe_acc.png", "teacher_quality_probe_acc.png", "pareto.png"):
        assert (salt_root / SWEEP / image).read_bytes().startswith(PNG_MAGIC)
        assert f"({image})" in text
    assert "Skipped" not in text and "Too few points" not in text


def test_isoflop_table_names_the_planted_best_fraction(salt_root):
    text = write_report(salt_root, SWEEP).read_text()
    rows = _table_after(text, "| budget.flops | best fraction |")
    assert len(rows) == len(BUDGETS)
    for row, budget in zip(rows, BUDGETS):
        best = BEST_FRACTION[budget]
        worst = max(FRACTIONS, key=lambda f: abs(f - best))
        assert row["budget.flops"] == format_value(budget)
        assert row["best fraction"] == format_value(best)
        assert row["probe_acc"] == format_value(sum(_student_acc(budget, best, s) for s in SEEDS) / len(SEEDS))
        assert row["probe_acc at worst fraction"] == format_value(
            sum(_student_acc(budget, worst, s) for s in SEEDS) / len(SEEDS)
        )
        assert row["n seeds"] == str(len(SEEDS))
    assert f"{len(BUDGETS)} run(s) with a reused teacher (`teacher_flops` > 0) left out of the IsoFLOP curves." in text


def test_teacher_quality_slope_matches_linregress_on_planted_runs(salt_root):
    text = write_report(salt_root, SWEEP).read_text()
    teacher = [_teacher_acc(*cell) for cell in _salt_grid()] + [_reuse_accs(b)[0] for b in BUDGETS]
    student = [_student_acc(*cell) for cell in _salt_grid()] + [_reuse_accs(b)[1] for b in BUDGETS]
    fit = linregress(teacher, student)
    expected = (
        f"slope {format_value(float(fit.slope))} ± {format_value(float(fit.stderr))} "
        f"(r = {format_value(float(fit.rvalue))}, p = {format_value(float(fit.pvalue))}, n = {len(teacher)})"
    )
    assert expected in text
    assert "A slope near 0 means students are robust to teacher quality." in text


def test_dominance_sentence_names_the_planted_winner_per_metric(salt_root):
    text = write_report(salt_root, SWEEP).read_text()
    where = f"of the {len(BUDGETS)} budget(s) (`budget.flops`) where both have finished runs"
    assert f"`probe_acc_shape`: `salt` dominates `vjepa` at {len(BUDGETS)} {where}" in text
    assert f"`probe_acc_motion`: `vjepa` dominates `salt` at {len(BUDGETS)} {where}" in text


def test_pareto_lists_a_power_law_fit_per_method_and_metric(salt_root):
    text = write_report(salt_root, SWEEP).read_text()
    rows = _table_after(text, "| method | y | a | b | c | r2 |")
    assert {(row["method"], row["y"]) for row in rows} == {
        (method, y) for method in ("salt", "vjepa") for y in ("probe_acc_shape", "probe_acc_motion")
    }


def test_cost_columns_give_amortized_and_full_flops(salt_root):
    text = write_report(salt_root, SWEEP).read_text()
    rows = {row["run_id"]: row for row in _table_after(text, "| run_id | status |")}
    reuse = rows["reuse-1e+16"]
    assert reuse["flops_amortized"] == format_value(1e16 * REUSE_MEASURED)
    assert reuse["flops_full"] == format_value(1e16 * REUSE_MEASURED + TEACHER_COST)
    for run_id in ("vjepa-1e+16-s0", "salt-1e+16-f0.3-s0", "salt-1e+16-f0.3-s1"):
        assert rows[run_id]["flops_full"] == rows[run_id]["flops_amortized"] == rows[run_id]["flops_total"]
    assert f"{len(BUDGETS)} of {len(rows)} runs carry teacher FLOPs" in text
    assert "solid: amortized" not in text  # the axis label lives in the PNG, the Markdown names the columns


def test_missing_columns_give_one_line_per_panel_instead_of_raising(salt_root):
    text = _report_with(salt_root, {
        "isoflop": {"fraction": "variant.teacher_frac"},
        "teacher_quality": {"teacher_y": "teacher/probe_acc_motion"},
        "pareto": {"by": "variant.name", "ys": ["probe_acc_shape", "probe_acc_color"]},
        "cost": {"teacher_flops": "teacher_flop_count"},
    })
    assert (
        "Skipped the IsoFLOP panel: no column `variant.teacher_frac` in the results "
        "(did you mean `variant.teacher_fraction`?)."
    ) in text
    assert "Skipped the teacher-quality panel: no column `teacher/probe_acc_motion`" in text
    assert "Skipped the Pareto `probe_acc_color` panel: no column `probe_acc_color`" in text
    assert "Skipped the cost panel: no run logged `teacher_flop_count`" in text
    assert "flops_full" not in text
    assert not (salt_root / SWEEP / "isoflop_probe_acc.png").exists()
    assert (salt_root / SWEEP / "pareto.png").read_bytes().startswith(PNG_MAGIC)  # the y that exists is still drawn


def test_too_few_points_give_one_line(tmp_path):
    store = ResultsStore(tmp_path)
    for budget in BUDGETS:  # one fraction per budget, one teacher value: nothing to compare
        config = _salt_config(budget, 0, teacher_fraction=0.2)
        _write_run(store, f"salt-{budget:.0e}", config, {"probe_acc": 0.5, "teacher/probe_acc": 0.4}, budget)
    text = _report_with(tmp_path, {"isoflop": None, "teacher_quality": True, "pareto": {"ys": "probe_acc_shape"}})
    assert "Too few points for the IsoFLOP panel: no `budget.flops` has finished runs with `probe_acc` at two" in text
    assert "Too few points for the teacher-quality panel" in text
    assert "Skipped the Pareto `probe_acc_shape` panel: no column `probe_acc_shape`" in text
    assert not list((tmp_path / SWEEP).glob("*quality*.png"))


def test_panel_defaults_and_unknown_options_are_reported(salt_root):
    text = _report_with(salt_root, {"isoflop": True, "pareto": {"ys": "probe_acc_shape", "colour": "red"}})
    first_budget = _table_after(text, "| budget.flops | best fraction |")[0]
    assert first_budget["best fraction"] == format_value(BEST_FRACTION[1e15])
    assert "Ignored unknown option(s) `colour` in `report.pareto`" in text
    assert "`probe_acc_shape`: `salt` dominates `vjepa`" in text
    assert "## Teacher quality" not in text and "## FLOP cost" not in text


def test_without_panel_keys_the_report_has_no_panels(salt_root):
    text = _report_with(salt_root, {"group": "variant.name"})
    assert "## Power-law fits" in text
    assert not any(title in text for title in ("## IsoFLOP", "## Teacher quality", "## Pareto per", "## FLOP cost"))
    assert not (salt_root / SWEEP / "pareto.png").exists()


def test_a_single_method_is_not_compared(tmp_path):
    store = ResultsStore(tmp_path)
    for budget in BUDGETS:
        _write_run(store, f"vjepa-{budget:.0e}", {"variant": {"name": "vjepa"}, "budget": {"flops": budget}},
                   {"probe_acc_shape": _peak(budget)}, budget)
    text = _report_with(tmp_path, {"pareto": {"ys": ["probe_acc_shape"]}})
    assert "`probe_acc_shape`: only `vjepa` has finished runs, so no method is compared." in text
    assert (tmp_path / SWEEP / "pareto.png").read_bytes().startswith(PNG_MAGIC)
