"""results/claims.json: every claim decided by code from per-seed numbers, fed here with constructed numbers
both ways; the schema; the claims of `make reproduce` on constructed seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from autolabel.classes import CITYSCAPES
from autolabel.workflows.claims import Claim, evaluate_claims, judge, markdown
from autolabel.workflows.reproduce import (
    CLAIMS,
    STUDENTS,
    TEACHER,
    VARIANTS,
    ReproduceSettings,
    summarise,
    write_results,
)
from autolabel.workflows.steps import LARGE, THIN

# ---------------------------------------------------------------------------------------------------------
# the rules


def test_a_difference_holds_only_beyond_two_standard_errors():
    assert judge([0.010, 0.012, 0.011], "positive")["holds"]  # mean 0.011, SE 0.00058
    assert not judge([0.02, -0.01, 0.005], "positive")["holds"]  # mean 0.005, SE 0.0087: seed noise
    assert not judge([-0.010, -0.012, -0.011], "positive")["holds"]  # clearly the other way
    # exactly at the edge: mean = 2 SE does not hold (it must be more)
    values = [0.0, 3.0]  # mean 1.5, std 2.1213, SE 1.5
    verdict = judge(values, "positive")
    assert verdict["se"] == pytest.approx(1.5) and not verdict["holds"]
    assert judge([v + 1e-6 for v in values], "positive")["holds"] is False  # 1.500001 < 2 x 1.5
    assert judge([1.0, 1.2], "positive")["holds"]  # mean 1.1, SE 0.1


def test_bounds_hold_only_with_the_spread_on_the_right_side():
    assert judge([0.30, 0.32, 0.31], "below", 0.5)["holds"]
    assert not judge([0.45, 0.55, 0.50], "below", 0.5)["holds"]
    assert not judge([0.40, 0.60, 0.41], "below", 0.5)["holds"]  # mean 0.47 but SE 0.065
    assert judge([0.960, 0.970, 0.965], "at_least", 0.95)["holds"]
    assert not judge([0.96, 0.94, 0.95], "at_least", 0.95)["holds"]
    assert not judge([0.90, 0.91, 0.92], "at_least", 0.95)["holds"]


def test_one_seed_or_missing_numbers_never_hold():
    one = judge([0.5], "positive")
    assert one["n"] == 1 and one["mean"] == 0.5 and one["std"] is None and not one["holds"]
    assert "at least 2" in one["why"]
    assert not judge([None, 0.5, math.nan], "positive")["holds"]  # one number left
    assert judge([None, None], "at_least", 0.9)["mean"] is None


def test_mean_and_sample_standard_deviation():
    verdict = judge([1.0, 2.0, 3.0], "positive")
    assert verdict["mean"] == pytest.approx(2.0) and verdict["std"] == pytest.approx(1.0)
    assert verdict["se"] == pytest.approx(1 / math.sqrt(3)) and verdict["n"] == 3


def test_evaluate_claims_keeps_the_per_seed_numbers_and_the_schema():
    claims = [Claim("x_beats_y", "x beats y", lambda s: s["x"] - s["y"])]
    per_seed = {"0": {"x": 0.5, "y": 0.4}, "1": {"x": 0.52, "y": 0.41}, "2": {"x": 0.51, "y": 0.405}}
    (out,) = evaluate_claims(claims, per_seed)
    assert {"claim", "measured", "mean", "std", "holds"} <= set(out)
    assert out["claim"] == "x_beats_y" and out["holds"] is True
    assert out["measured"] == pytest.approx({"0": 0.1, "1": 0.11, "2": 0.105})
    flipped = evaluate_claims(claims, {k: {"x": v["y"], "y": v["x"]} for k, v in per_seed.items()})
    assert flipped[0]["holds"] is False and flipped[0]["mean"] == pytest.approx(-out["mean"])
    assert "x_beats_y" in markdown([out]) and "| yes |" in markdown([out]) and "**no**" in markdown(flipped)


# ---------------------------------------------------------------------------------------------------------
# the claims of `make reproduce`


def seed_numbers(gain: float, *, noise: float = 0.0) -> dict:
    """One seed's numbers in which every claim of the paper holds by ``gain`` (and reverses when negative)."""
    base = 0.4 + noise
    iou = {c: base for c in CITYSCAPES.names}
    table3 = {name: {"miou": base, "iou": iou, "step_seconds": 1.0} for name in VARIANTS}
    table3["hierarchical 0.5/1.0/2.0"]["miou"] = base + gain
    table3["explicit 0.5/1.0/2.0"]["step_seconds"] = 4.0 if gain > 0 else 1.0  # ratio 0.25 or 1.0
    table3["hierarchical 0.5/1.0/2.0"]["step_seconds"] = 1.0
    at_05 = {**iou, **{c: base - gain for c in THIN}, **{c: base + gain for c in LARGE}}
    at_2 = {**iou, **{c: base + gain for c in THIN}, **{c: base - gain for c in LARGE}}
    attention = {"attn_0.5x": {**{c: 0.5 - gain for c in THIN}, **{c: 0.5 + gain for c in LARGE}}}
    table4 = {name: base for name in (TEACHER, *STUDENTS)}
    table4["fine + auto coarse (p > 0.5)"] = base + gain
    return {
        "table3": table3,
        "failure_iou": {"0.5x": at_05, "2x": at_2},
        "attention": attention,
        "table4": table4,
        "auto_labels": {"coverage": 0.9, "precision": 0.95 + gain / 2 + noise / 10, "miou": 0.5},
    }


NAMED = (
    "table3_hierarchical_beats_explicit",
    "table3_hierarchical_beats_avgpool",
    "table3_pair_cost_vs_explicit",
    "fig2_thin_better_at_2x",
    "fig2_large_better_at_05x",
    "fig5_attention_05x_large_over_thin",
    "table4_auto_beats_coarse",
    "table4_auto_beats_fine_only",
    "auto_label_precision_at_05",
)


def test_reproduce_has_every_claim_the_issue_names():
    assert set(NAMED) <= {c.name for c in CLAIMS}


@pytest.mark.parametrize("sign", [1, -1])
def test_every_claim_follows_the_per_seed_numbers_both_ways(sign: int):
    per_seed = {str(s): seed_numbers(sign * 0.05, noise=0.01 * s) for s in range(3)}
    verdicts = {c["claim"]: c for c in evaluate_claims(CLAIMS, per_seed)}
    for name in NAMED:
        assert verdicts[name]["holds"] is (sign > 0), (name, verdicts[name])
    assert verdicts["table3_pair_cost_vs_explicit"]["mean"] == pytest.approx(0.25 if sign > 0 else 1.0)
    assert verdicts["fig2_thin_better_at_2x"]["mean"] == pytest.approx(sign * 0.1)  # (base + g) - (base - g)


def test_a_claim_within_seed_noise_does_not_hold():
    # the same small gain, but the seeds disagree about its sign
    per_seed = {"0": seed_numbers(0.02), "1": seed_numbers(-0.015), "2": seed_numbers(0.01)}
    verdicts = {c["claim"]: c for c in evaluate_claims(CLAIMS, per_seed)}
    assert not verdicts["table4_auto_beats_coarse"]["holds"]
    assert verdicts["table4_auto_beats_coarse"]["mean"] == pytest.approx(0.005)


def test_claims_json_is_written_with_the_results(tmp_path: Path):
    settings = ReproduceSettings(work=tmp_path, results=tmp_path / "results", config=tmp_path / "r.toml")
    per_seed = {s: seed_numbers(0.05, noise=0.01 * s) for s in range(2)}
    results = summarise(per_seed, CITYSCAPES, settings, 60.0)
    results["claims"] = evaluate_claims(CLAIMS, results["per_seed"])
    write_results(settings.results, results)
    saved = json.loads((settings.results / "claims.json").read_text())
    assert [c["claim"] for c in saved] == [c.name for c in CLAIMS]
    for claim in saved:
        assert set(claim["measured"]) == {"0", "1"}
        assert claim["holds"] == judge(list(claim["measured"].values()), claim["rule"], claim["threshold"])["holds"]
    text = (settings.results / "reproduce.md").read_text()
    assert f"{len(CLAIMS)} of {len(CLAIMS)} hold" in text and "`fig2_thin_better_at_2x`" in text
