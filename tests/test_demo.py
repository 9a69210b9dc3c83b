"""The demo orchestration: the human-coarse label set, the printed table, (slow) the whole run + resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.config import DataConfig
from autolabel.data.io import read_label
from autolabel.data.sources import Source, discover_split
from autolabel.errors import DataError
from autolabel.labelset.human import coarse_labelset
from autolabel.labelset.verify import verify_labelset
from autolabel.models.checkpoint import checkpoint_sha256
from autolabel.train.datasets import AutoLabelSource
from autolabel.train.state import iter_log
from autolabel.workflows.demo import (
    MODELS,
    DemoResult,
    DemoSettings,
    results_table,
    run_demo,
    run_side_by_side,
)
from autolabel.workflows.reproduce import (
    README_END,
    README_START,
    STUDENTS,
    TEACHER,
    VARIANTS,
    ReproduceSettings,
    mean_std,
    run_dir,
    run_reproduce,
    splice_readme,
    step_seconds,
    summarise,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]
# a city and a training run small enough for a test: 64x32 images, 2 short epochs, no periodic validation
TINY = (
    "train.epochs=2",
    "student.epochs=2",
    "train.batch_size=4",
    "train.crop_size=[32, 64]",
    "train.class_uniform_tile=32",
    "generate.centroid_tile=32",
    "student.drop_auto_after_epoch=1",
    "train.val_every=0",
    "student.allow_empty_labels=true",  # two epochs of a tiny teacher may label nothing at 0.5
)


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    root = synthetic_city(train=2, val=1, extra=4, size=(64, 32), seed=3)
    return root


def test_coarse_labelset_holds_the_human_labels(city: Path, tmp_path: Path):
    data = DataConfig(layout="cityscapes", root=city)
    samples = discover_split(data, "train_extra")
    out = coarse_labelset(
        samples, tmp_path / "coarse", CITYSCAPES, Source.from_config(data, "train_extra"), centroid_tile=32
    )
    rows = labelset.read_manifest(out).to_pylist()
    assert [r["id"] for r in rows] == [s.id for s in samples]
    lut = CITYSCAPES.label_to_train_lut()
    for row, sample in zip(rows, samples, strict=True):
        expected = read_label(sample.coarse, lut)
        assert np.array_equal(read_label(out / row["label"]), expected)
        counts = np.bincount(expected.ravel(), minlength=256)
        assert row["class_counts"] == counts[:19].tolist() and row["ignore_count"] == counts[255]
        assert {c["cls"] for c in row["centroids"]} == set(np.flatnonzero(counts[:19]).tolist())
    assert verify_labelset(out).ok
    # the student reads it exactly like an auto-label set
    source = AutoLabelSource(out, CITYSCAPES)
    assert len(source) == len(samples)


def test_coarse_labelset_is_skipped_when_complete(city: Path, tmp_path: Path):
    data = DataConfig(layout="cityscapes", root=city)
    samples = discover_split(data, "train_extra")
    out = coarse_labelset(samples, tmp_path / "coarse", CITYSCAPES, Source.from_config(data, "train_extra"))
    parts = {p: p.stat().st_mtime_ns for p in labelset.part_paths(out)}
    coarse_labelset(samples, out, CITYSCAPES, Source.from_config(data, "train_extra"))
    assert {p: p.stat().st_mtime_ns for p in labelset.part_paths(out)} == parts


def test_side_by_side_runs_keep_the_task_order():
    tasks = [(pow, (2, 10)), (divmod, (7, 2)), (pow, (3, 2))]
    assert run_side_by_side(tasks, jobs=2) == run_side_by_side(tasks, jobs=1) == [1024, (3, 1), 9]


def test_side_by_side_workers_run_one_torch_thread_each():
    import torch

    assert run_side_by_side([(torch.get_num_threads, ())] * 2, jobs=2) == [1, 1]


def test_results_table_shows_models_label_sets_and_time(tmp_path: Path):
    result = DemoResult(
        out=tmp_path,
        report=tmp_path / "report" / "index.html",
        miou={"teacher (fine)": 0.4321, "student (fine + auto coarse)": None},
        labels={"auto": {"coverage": 0.9, "accuracy": 0.875, "miou": 0.5, "images": 3}},
        attention={"attn_0.5x": {"thin": 0.25, "large": 0.625}, "attn_1.0x": {"thin": None, "large": 0.5}},
        seconds={"synth": 30.0, "teacher": 90.0},
    )
    text = results_table(result)
    assert "teacher (fine)" in text and "43.2" in text and "n/a" in text
    assert "prec." in text and "90.0   87.5  50.0" in text  # coverage, precision, mIoU of the auto labels
    lines = text.splitlines()
    assert any(line.startswith("attn_0.5x") and line.endswith("0.25  0.62") for line in lines)
    assert any(line.startswith("attn_1.0x") and line.endswith("n/a  0.50") for line in lines)
    assert "2.0 min" in text


@pytest.mark.slow
def test_demo_runs_end_to_end_and_a_rerun_skips_finished_stages(tmp_path: Path):
    settings = DemoSettings(
        out=tmp_path / "demo",
        config=REPO / "pipelines" / "demo.toml",
        overrides=TINY,
        train=8,
        val=4,
        extra=8,
        size=(64, 32),
        seed=1,
        synth_workers=0,
    )
    result = run_demo(settings)
    out = settings.out
    assert set(result.miou) == set(MODELS)
    assert all(0.0 <= v <= 1.0 for v in result.miou.values())
    # human coarse labels are fine labels shrunk away from boundaries: wherever they say a class, it is right
    assert result.labels["coarse"]["accuracy"] == 1.0 and 0 < result.labels["coarse"]["coverage"] < 1
    assert result.report.is_file() and (out / "labels" / "labelset.json").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["miou"] == result.miou
    for name, (run, _) in MODELS.items():
        assert json.loads((out / "eval" / f"{run}.json").read_text())["miou"] == result.miou[name]
    stamps = {
        p: p.stat().st_mtime_ns
        for p in (out / "teacher" / "last.pt", out / "student_auto" / "last.pt", out / "eval" / "teacher.json")
    }
    again = run_demo(settings)
    assert again.miou == result.miou
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained or re-evaluated


# ---------------------------------------------------------------------------------------------------------
# make reproduce


def test_readme_shows_the_reproduce_tables_it_names():
    """The README quotes results/reproduce.md verbatim (with the command that produced it): no stale copy."""
    tables = (REPO / "results" / "reproduce.md").read_text()
    assert tables.startswith("Produced by `autolabel reproduce")
    readme = (REPO / "README.md").read_text()
    assert splice_readme(readme, tables) == readme  # what the markers hold is exactly the file


def test_splice_readme_replaces_only_the_marked_block():
    readme = f"# title\n\nbefore\n{README_START}\n\nold tables\n\n{README_END}\nafter\n"
    new = splice_readme(readme, "new tables\n")
    assert new == f"# title\n\nbefore\n{README_START}\n\nnew tables\n\n{README_END}\nafter\n"
    assert splice_readme(new, "new tables") == new
    with pytest.raises(DataError, match="expected one"):
        splice_readme("no markers here", "tables")


def test_mean_and_sample_spread():
    stat = mean_std([0.5, None, 0.7])
    assert stat["mean"] == pytest.approx(0.6) and stat["std"] == pytest.approx(0.1414214) and stat["n"] == 2
    assert mean_std([0.3])["std"] is None and mean_std([None])["mean"] is None


def test_step_time_comes_from_the_training_log(tmp_path: Path):
    records = [{"event": "start"}] + [
        {"event": "train", "step": s, "seconds": t} for s, t in ((10, 5.0), (20, 7.0), (30, 11.0))
    ]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert step_seconds(tmp_path) == pytest.approx(0.4)  # the first interval is warm-up


def _seed_numbers(miou: float, step: float) -> dict:
    iou = {c: miou for c in CITYSCAPES.names}
    steps = {name: step * (2 if "explicit" in name else 1) for name in VARIANTS}
    return {
        "table3": {name: {"miou": miou, "iou": iou, "step_seconds": steps[name]} for name in VARIANTS},
        "failure_iou": {"0.5x": {**iou, "pole": 0.0}, "2x": {**iou, "road": 0.0}},
        "attention": {"attn_0.5x": {"road": 0.8, "pole": 0.2}},
        "table4": {name: miou for name in (TEACHER, *STUDENTS)},
    }


def test_summary_and_markdown_of_several_seeds(tmp_path: Path):
    settings = ReproduceSettings(
        work=tmp_path, results=tmp_path / "results", config=tmp_path / "r.toml", command="make reproduce"
    )
    results = summarise({0: _seed_numbers(0.4, 1.0), 1: _seed_numbers(0.6, 3.0)}, CITYSCAPES, settings, 90.0)
    assert results["table3"]["single 1.0"]["miou"]["mean"] == pytest.approx(0.5)
    assert results["table3"]["explicit 0.5/1.0/2.0"]["step_time_vs_single"]["mean"] == pytest.approx(2.0)
    thin = results["failure_modes"]["groups"]["thin"]
    assert thin["0.5x"]["mean"] == pytest.approx((0.4 * 4 / 5 + 0.6 * 4 / 5) / 2)  # pole is 0 at 0.5x
    assert thin["2x"]["mean"] == pytest.approx(0.5)
    assert results["attention"]["attn_0.5x"]["road"]["mean"] == pytest.approx(0.8)
    write_results(settings.results, results)
    text = (settings.results / "reproduce.md").read_text()
    assert "`make reproduce`" in text and "| single 1.0 | 50.0 ± 14.1 | 1.00 ± 0.00x |" in text
    assert json.loads((settings.results / "reproduce.json").read_text())["seeds"] == [0, 1]


@pytest.mark.slow
def test_reproduce_runs_every_experiment_for_a_seed(tmp_path: Path):
    settings = ReproduceSettings(
        work=tmp_path / "work",
        results=tmp_path / "results",
        config=REPO / "pipelines" / "reproduce.toml",
        seeds=(0,),
        overrides=(*TINY, "train.epochs=2", "student.epochs=1"),
        train=8,
        val=4,
        extra=8,
        size=(64, 32),
        jobs=1,
    )
    results = run_reproduce(settings)
    # the labelling teacher trains train.epochs; every compared row the students' schedule
    assert _epochs_done(run_dir(settings.work, 0, TEACHER)) == 2
    assert {
        _epochs_done(run_dir(settings.work, 0, name)) for name in (*VARIANTS, *list(STUDENTS)[1:]) if "0.25" not in name
    } == {1}
    labels_meta = labelset.read_labelset(run_dir(settings.work, 0, "labels"))
    assert labels_meta["teacher_sha256"] == checkpoint_sha256(run_dir(settings.work, 0, TEACHER) / "last.pt")
    assert results["epochs"] == {"teacher": 2, "compared": 1}
    assert all(v["miou"]["mean"] is not None for v in results["table3"].values())
    assert all(v["mean"] is not None for v in results["table4"].values())
    assert set(results["attention"]) == {"attn_0.5x", "attn_1.0x"}
    values = [s["mean"] for a in results["attention"].values() for s in a.values() if s["mean"] is not None]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    assert "teacher: fine only, long schedule" in (settings.results / "reproduce.md").read_text()


def _epochs_done(run: Path) -> int:
    return next(r for r in iter_log(run) if r["event"] == "end")["epochs_done"]
