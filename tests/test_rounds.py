"""`autolabel rounds`: the stopping rule, the tables, and (slow) a tiny 2-round run: provenance chain, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from autolabel import labelset
from autolabel.cli import main
from autolabel.config import replace
from autolabel.errors import ConfigError, LabelSetError
from autolabel.labelset.lineage import lineage
from autolabel.models.checkpoint import checkpoint_sha256
from autolabel.workflows.rounds import (
    City,
    RoundsSettings,
    StopRule,
    markdown,
    parse_stop_rule,
    run_rounds,
    stop_signals,
    summarise_seeds,
)

REPO = Path(__file__).resolve().parents[1]
TINY = (  # as tests/test_demo.py: 64x32 images, 2 short epochs, no periodic validation
    "train.epochs=2",
    "student.epochs=2",
    "train.batch_size=4",
    "train.crop_size=[32, 64]",
    "train.class_uniform_tile=32",
    "generate.centroid_tile=32",
    "student.drop_auto_after_epoch=1",
    "train.val_every=0",
    # two steps leave the tiny model near uniform (max p ~ 1/19): at 0.5 it would label nothing, at 0.05 all
    "generate.threshold=0.05",
)


# ---------------------------------------------------------------------------------------------------------
# the stopping rule


@pytest.mark.parametrize(
    "text, rule",
    [
        ("changed<0.02", StopRule("changed", 0.02)),
        ("changed < 2%", StopRule("changed", 0.02)),
        ("miou-plateau", StopRule("miou-plateau", 0.0)),
        ("miou-plateau<0.005", StopRule("miou-plateau", 0.005)),
    ],
)
def test_stop_rules_parse(text, rule):
    assert parse_stop_rule(text) == rule
    assert parse_stop_rule(str(rule)) == rule  # what the results print reads back


@pytest.mark.parametrize("text", ["changed", "changed<2", "changed>0.1", "plateau", "miou-plateau<x", ""])
def test_bad_stop_rules_name_the_flag(text):
    with pytest.raises(ConfigError, match="--stop-when"):
        parse_stop_rule(text)


def _record(student_miou, changed_share):
    return {"student_miou": student_miou, "changed_share": changed_share}


def test_changed_rule_fires_once_few_pixels_change():
    rule = parse_stop_rule("changed<0.05")
    assert not stop_signals([_record(0.4, None)], rule)["stop"]  # round 1 has nothing to compare with
    assert not stop_signals([_record(0.4, None), _record(0.5, 0.08)], rule)["stop"]
    signals = stop_signals([_record(0.4, None), _record(0.5, 0.03)], rule)
    assert signals["stop"] and signals["changed_share"] == 0.03 and signals["rule"] == "changed<0.05"


def test_plateau_rule_fires_when_the_student_stops_improving():
    bare, margin = parse_stop_rule("miou-plateau"), parse_stop_rule("miou-plateau<0.01")
    better, same, worse = _record(0.455, 0.1), _record(0.45, 0.1), _record(0.44, 0.1)
    first = _record(0.45, None)
    assert stop_signals([first, better], bare)["miou_gain"] == pytest.approx(0.005)
    assert not stop_signals([first, better], bare)["stop"] and stop_signals([first, better], margin)["stop"]
    assert stop_signals([first, same], bare)["stop"] and stop_signals([first, worse], bare)["stop"]
    assert not stop_signals([first], bare)["stop"]  # nothing to compare with yet
    assert not stop_signals([first, _record(None, 0.1)], bare)["stop"]  # no val labels: never fires


def test_signals_are_reported_without_a_rule():
    signals = stop_signals([_record(0.4, None), _record(0.5, 0.2)], None)
    assert signals == {"changed_share": 0.2, "miou_gain": pytest.approx(0.1), "rule": None, "stop": False}


# ---------------------------------------------------------------------------------------------------------
# tables


def _round(k, student, changed, seconds=60.0):
    return {
        "round": k,
        "teacher_miou": 0.5,
        "student_miou": student,
        "coverage": 0.8,
        "precision": 0.9,
        "labels_miou": 0.45,
        "changed_share": changed,
        "seconds": {"student": seconds},
        "stop": {"miou_gain": None if k == 1 else student - 0.4, "stop": False},
    }


def test_seed_summary_is_mean_and_sample_std_per_round():
    chains = [
        {"rounds": [_round(1, 0.4, None), _round(2, 0.44, 0.1)], "minutes": 2.0},
        {"rounds": [_round(1, 0.4, None), _round(2, 0.46, 0.3)], "minutes": 2.0},
        {"rounds": [_round(1, 0.4, None)], "minutes": 1.0},  # stopped after round 1
    ]
    summary = summarise_seeds(chains)
    assert [row["chains"] for row in summary] == [3, 2]
    assert summary[0]["student_miou"] == {"mean": pytest.approx(0.4), "std": pytest.approx(0.0), "n": 3}
    assert summary[1]["student_miou"]["mean"] == pytest.approx(0.45)
    assert summary[1]["student_miou"]["std"] == pytest.approx(0.0141421, abs=1e-6)  # sqrt(2 * 0.01^2 / 1)
    assert summary[1]["changed_share"]["mean"] == pytest.approx(0.2)
    assert summary[0]["changed_share"]["mean"] is None
    text = markdown(
        {"command": "autolabel rounds --seeds 3", "seeds": [0, 1, 2], "wall_minutes": 3.0,
         "per_seed": {str(i): c for i, c in enumerate(chains)}, "summary": summary}
    )  # fmt: skip
    assert "| 2 | 50.0 ± 0.0 | 45.0 ± 1.4 | 80.0 ± 0.0 | 90.0 ± 0.0 | 45.0 ± 0.0 | 20.0 ± 14.1 |" in text
    assert "`autolabel rounds --seeds 3`" in text and "chains 1.0-2.0 min" in text


def test_chain_table_marks_where_the_rule_stopped():
    rounds = [_round(1, 0.4, None), _round(2, 0.41, 0.01)]
    rounds[1]["stop"] = {"miou_gain": 0.01, "stop": True}
    text = markdown({"command": "x", "rounds": rounds, "minutes": 2.0, "stopped_after": 2, "stop_when": "changed<0.02"})
    assert "| 2 | 50.0 | 41.0 | 80.0 | 90.0 | 45.0 | 1.0 | 1.0 | yes |" in text
    assert "Stopped after round 2: changed<0.02." in text


def test_settings_refuse_zero_rounds_and_repeated_seeds(tmp_path: Path):
    with pytest.raises(ConfigError, match="--rounds"):
        RoundsSettings(out=tmp_path, config=tmp_path / "p.toml", rounds=0)
    with pytest.raises(ConfigError, match="--seeds"):
        RoundsSettings(out=tmp_path, config=tmp_path / "p.toml", seeds=(1, 1))


def test_cli_refuses_a_bad_rule_before_training(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["rounds", "--config", str(REPO / "pipelines" / "demo.toml"), "--out", str(tmp_path), "--stop-when", "x"]
    )
    assert result.exit_code == 2 and "--stop-when" in result.output
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------
# a tiny 2-round run, killed in round 2 and resumed


class Killed(Exception):
    pass


def _settings(out: Path, rounds: int = 2, stop_when: StopRule | None = None) -> RoundsSettings:
    return RoundsSettings(
        out=out,
        config=REPO / "pipelines" / "demo.toml",
        rounds=rounds,
        overrides=TINY,
        city=City(train=6, val=2, extra=4, size=(64, 32), seed=2, workers=0),
        stop_when=stop_when,
    )


def _round_one_files(out: Path) -> dict[Path, int]:
    round1 = out / "round-1"
    files = [round1 / "teacher" / "last.pt", round1 / "student" / "last.pt", round1 / "round.json"]
    files += labelset.part_paths(round1 / "labels") + [round1 / "labels" / "labelset.json"]
    return {p: p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> dict:
    """A 2-round run killed as round 2's student starts, then run again."""
    out = tmp_path_factory.mktemp("rounds") / "run"
    stages: list[str] = []

    def kill_at_round_two_student(text: str) -> None:
        stages.append(text)
        if text == "round 2: student":
            raise Killed

    with pytest.raises(Killed):
        run_rounds(_settings(out), on_stage=kill_at_round_two_student)
    before = _round_one_files(out)
    assert not (out / "round-2" / "round.json").exists() and (out / "round-2" / "labels" / "labelset.json").exists()
    again: list[str] = []
    results = run_rounds(_settings(out), on_stage=again.append)
    return {"out": out, "results": results, "before": before, "stages": stages, "again": again}


@pytest.mark.slow
def test_two_rounds_leave_two_label_sets_with_a_provenance_chain(resumed):
    out = resumed["out"]
    first, second = (labelset.read_labelset(out / f"round-{k}" / "labels") for k in (1, 2))
    assert first["teacher_sha256"] == checkpoint_sha256(out / "round-1" / "teacher" / "last.pt")
    assert second["teacher_sha256"] == checkpoint_sha256(out / "round-1" / "student" / "last.pt")
    assert first["parent_labelset_id"] is None and second["parent_labelset_id"] == first["labelset_id"]
    assert second["round"]["index"] == 2 and second["round"]["teacher"] == "../../round-1/student/last.pt"
    assert [m["labelset_id"] for m in lineage(out / "round-2" / "labels")] == [
        second["labelset_id"],
        first["labelset_id"],
    ]
    # the student of round 2 trained on round 2's labels
    config = (out / "round-2" / "student" / "config.toml").read_text()
    assert str(out / "round-2" / "labels") in config
    results = resumed["results"]
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    r1, r2 = results["rounds"]
    assert r1["changed_share"] is None and 0.0 <= r2["changed_share"] <= 1.0
    assert r2["teacher_miou"] == r1["student_miou"]  # round 2's teacher is round 1's student
    diff = json.loads((out / "round-2" / "diff.json").read_text())
    assert diff["a"]["labelset_id"] == first["labelset_id"] and diff["changed_share"] == r2["changed_share"]
    assert all(0.0 < r["coverage"] <= 1.0 and 0.0 <= r["precision"] <= 1.0 for r in results["rounds"])
    assert 'id="diff"' in (out / "round-2" / "report" / "index.html").read_text()
    assert 'id="diff"' not in (out / "round-1" / "report" / "index.html").read_text()
    assert json.loads((out / "rounds.json").read_text())["rounds"][1]["labelset_id"] == second["labelset_id"]
    assert "| 2 |" in (out / "rounds.md").read_text()


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_finished_rounds(resumed):
    assert _round_one_files(resumed["out"]) == resumed["before"]  # round 1: nothing rewritten
    assert "round 1: finished earlier, skipped" in resumed["again"]
    assert not any(s.startswith("round 1: ") and "skipped" not in s for s in resumed["again"])
    assert "round 2: student" in resumed["again"] and (resumed["out"] / "round-2" / "round.json").is_file()


@pytest.mark.slow
def test_a_rule_stops_the_chain_and_a_stale_round_is_refused(resumed, tmp_path: Path):
    out = tmp_path / "copy"
    shutil.copytree(resumed["out"], out)
    # every round-2 label set changes less than 100% of the pixels: the rule fires after round 2
    results = run_rounds(_settings(out, rounds=3, stop_when=parse_stop_rule("changed<1.0")))
    assert results["stopped_after"] == 2 and len(results["rounds"]) == 2
    assert not (out / "round-3").exists()
    # a retrained round-1 student makes round 2 stale: refused, not silently mixed
    student = out / "round-1" / "student" / "last.pt"
    student.write_bytes(student.read_bytes() + b"\0")
    with pytest.raises(LabelSetError, match="remove .*round-2"):
        run_rounds(_settings(out))


@pytest.mark.slow
def test_several_seeds_run_one_chain_each_and_summarise(tmp_path: Path):
    settings = replace(_settings(tmp_path / "seeds", rounds=1), seeds=(0, 1), jobs=2)
    results = run_rounds(settings)
    assert results["seeds"] == [0, 1] and [row["chains"] for row in results["summary"]] == [2]
    per_seed = [json.loads((tmp_path / "seeds" / f"seed-{s}" / "rounds.json").read_text()) for s in (0, 1)]
    assert [chain["seed"] for chain in per_seed] == [0, 1]
    # the seed is the training seed: same city, same schedule, different teachers
    teachers = {checkpoint_sha256(tmp_path / "seeds" / f"seed-{s}" / "round-1" / "teacher" / "last.pt") for s in (0, 1)}
    assert len(teachers) == 2
    mious = [chain["rounds"][0]["student_miou"] for chain in per_seed]
    assert results["summary"][0]["student_miou"]["mean"] == pytest.approx(sum(mious) / 2)
    assert "2 seeds: mean ± sample std" in (tmp_path / "seeds" / "rounds.md").read_text()
