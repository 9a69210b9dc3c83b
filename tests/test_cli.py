"""One interface: the option vocabulary, flags checked like config values, exit codes, messages, start-up.

The commands run in-process (CliRunner, stderr apart from stdout); where a test is about what the CLI hands
to the API, the API function is replaced by a recorder, so the vocabulary tests stay fast.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autolabel import api
from autolabel import labelset as labelsets
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import ModelConfig, load_config
from autolabel.data.sources import Source
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, EXIT_USER_ERROR
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
ACTIONS = {"--dry-run", "--fail-fast", "--overwrite", "--resume", "--official", "--help", "--version"}
LABELSET_COMMANDS = ("manifest", "verify", "rethreshold", "report", "evaluate-labels")


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    return synthetic_city(train=2, val=2, extra=3, size=(64, 32), seed=5)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny", infer_scales=(0.5, 1.0))
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, teacher, city) -> Path:
    """A label set of the city's train_extra, as `generate` writes it."""
    out = tmp_path_factory.mktemp("set") / "labels"
    run = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out", out,
                 "--device", "cpu", "--scales", "0.5,1.0")  # fmt: skip
    assert run.exit_code == 0, run.output
    return out


class Recorder:
    """Stands in for an API function: records the call, returns ``result``."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.args: tuple = ()
        self.kwargs: dict[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.args, self.kwargs = args, kwargs
        return self.result


def all_commands() -> list[tuple[str, click.Command]]:
    return sorted(main.commands.items())


# ---------------------------------------------------------------------------------------------------------
# start-up and help


def test_importing_the_cli_loads_no_heavy_library():
    code = (
        "import sys, autolabel.cli; "
        "print([m for m in ('torch', 'dask', 'distributed', 'zarr', 'pyarrow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_top_level_help_lists_every_command_without_cutting_its_summary():
    result = invoke("--help")
    assert result.exit_code == 0
    lines = result.output.split("Commands:")[1].split("Exit status")[0].strip().splitlines()
    summaries = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.strip()}
    assert set(summaries) == set(main.commands)
    for name, text in summaries.items():
        assert not text.endswith("..."), (name, text)
        assert main.commands[name].short_help == text


@pytest.mark.parametrize(("name", "command"), all_commands(), ids=[n for n, _ in all_commands()])
def test_every_option_is_described_and_booleans_come_in_pairs(name, command):
    assert command.help and command.short_help
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        assert param.help, f"{name} {param.opts[0]} has no help text"
        if param.is_flag and not param.count and param.opts[0] not in ACTIONS:
            assert param.secondary_opts == [f"--no-{param.opts[0][2:]}"], f"{name} {param.opts[0]}"


@pytest.mark.parametrize(("name", "command"), all_commands(), ids=[n for n, _ in all_commands()])
def test_the_set_example_of_every_command_is_a_valid_override(name, command):
    options = [p for p in command.params if isinstance(p, click.Option) and "--set" in p.opts]
    if not options:
        return
    example = options[0].help.split("e.g. --set ")[1].rstrip(".")
    load_config(None, [example])  # raises for a key or value the config does not accept


def test_labelset_commands_take_the_label_set_as_their_argument():
    for name in LABELSET_COMMANDS:
        usage = invoke(name, "--help").output.splitlines()[0]
        assert "LABELSET" in usage, usage


def test_help_of_commands_that_read_images_lists_the_extensions():
    for name in ("generate", "evaluate"):
        assert "png/jpg/jpeg" in " ".join(invoke(name, "--help").output.split())


# ---------------------------------------------------------------------------------------------------------
# one vocabulary: each old spelling still works, says so in one line, and means what the new one does


def test_generate_data_spec_and_its_old_spellings_name_the_same_label_set(teacher, city, tmp_path):
    images = city / "leftImg8bit" / "train_extra"
    new = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out",
                 tmp_path / "a", "--dry-run")  # fmt: skip
    old = invoke("generate", "--teacher", teacher, "--dataset", f"cityscapes:{city}:train_extra", "--out",
                 tmp_path / "a", "--dry-run")  # fmt: skip
    folder = invoke("generate", "--teacher", teacher, "--data", images, "--out", tmp_path / "b", "--dry-run")
    old_folder = invoke("generate", "--teacher", teacher, "--images", images, "--out", tmp_path / "b", "--dry-run")
    for result in (new, old, folder, old_folder):
        assert result.exit_code == 0, result.output

    def plan(result: Any) -> list[str]:  # all but the measured time and memory, which vary run to run
        measured = ("estimate:", "wall time:", "peak memory:")
        return [line for line in result.stdout.splitlines() if not line.startswith(measured)]

    assert plan(new) == plan(old) and plan(folder) == plan(old_folder)
    assert new.stderr == "" and old.stderr == "note: --dataset is deprecated; use --data SPEC (same grammar)\n"
    assert old_folder.stderr.count("\n") == 1 and "--images is deprecated" in old_folder.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_generate_values_and_the_old_label_ids_flag(teacher, city, tmp_path):
    def plan(*extra: str) -> Any:
        return invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out",
                      tmp_path / "o", "--dry-run", *extra)  # fmt: skip

    label_ids, old, train_ids = plan("--values", "label-ids"), plan("--label-ids"), plan("--values", "train-ids")
    first = [r.stdout.splitlines()[0] for r in (label_ids, old, train_ids)]  # "label set <id> -> OUT"
    assert first[0] == first[1] != first[2]  # the label set id says what the PNGs hold
    assert "--label-ids is deprecated; use --values label-ids" in old.stderr
    both = plan("--label-ids", "--values", "train-ids")
    assert both.exit_code == EXIT_USER_ERROR and "not several" in both.stderr


def test_generate_dask_workers_and_the_old_workers_option(monkeypatch, teacher, city, tmp_path):
    calls = []
    for args in (
        ["--dask-workers", "2", "--dask-scheduler", "tcp://h:1"],
        ["--workers", "2", "--scheduler", "tcp://h:1"],
    ):
        recorder = Recorder(api.GenerateResult(labelset_id="x", planned=0, skipped=0))
        monkeypatch.setattr(api, "generate_labels", recorder)
        result = invoke("generate", "--teacher", teacher, "--data", city, "--out", tmp_path / "o", *args)
        assert result.exit_code == 0, result.output
        calls.append((recorder.kwargs["workers"], recorder.kwargs["scheduler"], result.stderr))
    assert calls[0][:2] == calls[1][:2] == (2, "tcp://h:1")
    assert calls[0][2] == "" and "--workers is deprecated" in calls[1][2] and "--scheduler is deprecated" in calls[1][2]


def test_synth_keeps_workers_for_its_local_processes_and_extra_fine_is_a_pair(tmp_path):
    for flag, fine in (("--extra-fine", True), ("--no-extra-fine", False)):
        out = tmp_path / flag
        result = invoke("synth", out, "--train", 1, "--val", 0, "--extra", 1, "--size", "64x32", "--workers", 0, flag)
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert (out / "gtFine" / "train_extra").is_dir() is fine
        assert "wrote 2 images" in result.stdout


@pytest.mark.parametrize(
    ("args", "values"),
    [([], "label-ids"), (["--values", "train-ids"], "train-ids"), (["--train-ids"], "train-ids")],
)
def test_evaluate_values_and_the_old_train_ids_flag(monkeypatch, city, tmp_path, args, values):
    recorder = Recorder({"miou": 0.5, "pixel_accuracy": 0.5, "pixels": 1, "iou": {"road": 0.5}})
    monkeypatch.setattr(api, "evaluate_checkpoint", recorder)
    result = invoke("evaluate", "--checkpoint", tmp_path / "m.pt", "--data", f"cityscapes:{city}:val", *args)
    assert result.exit_code == 0, result.output
    assert recorder.kwargs["values"] == values
    assert ("deprecated" in result.stderr) is ("--train-ids" in args)


def test_evaluate_writes_into_its_out_folder_or_json_file_and_reads_an_old_json_out(monkeypatch, city, tmp_path):
    payload = {"miou": 0.25, "pixel_accuracy": 0.5, "pixels": 4, "iou": {"road": 0.25}}
    monkeypatch.setattr(api, "evaluate_checkpoint", Recorder(payload))
    base = ["evaluate", "--checkpoint", tmp_path / "m.pt", "--data", f"cityscapes:{city}:val"]
    assert invoke(*base, "--out", tmp_path / "eval").exit_code == 0
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text()) == payload
    assert invoke(*base, "--json", tmp_path / "m.json").exit_code == 0
    assert json.loads((tmp_path / "m.json").read_text()) == payload
    printed = invoke(*base, "--json")
    assert json.loads(printed.stdout) == payload
    old = invoke(*base, "--out", tmp_path / "old.json")
    assert old.exit_code == 0 and json.loads((tmp_path / "old.json").read_text()) == payload
    assert "--out is now a folder" in old.stderr and "mIoU" in old.stdout


def test_evaluate_labels_data_and_the_old_reference_option(monkeypatch, labelled, tmp_path):
    report = {"coverage": 1.0, "accuracy": 1.0, "miou": 1.0, "classes": {}, "sweep": None, "images": 1}
    seen = []
    monkeypatch.setattr(api, "audit_labels", lambda labels, data, **kw: seen.append((data, kw["values"])) or report)
    monkeypatch.setattr("autolabel.evaluate.audit.audit_table", lambda r: "table")
    (tmp_path / "refs").mkdir()
    runs = [
        invoke("evaluate-labels", labelled, "--data", "gtCoarse"),
        invoke("evaluate-labels", labelled, "--reference", "gtCoarse"),
        invoke("evaluate-labels", labelled, "--reference", tmp_path / "refs", "--train-ids"),
        invoke("evaluate-labels", labelled),
    ]
    assert [r.exit_code for r in runs] == [0, 0, 0, 0], [r.output for r in runs]
    assert seen[0] == seen[1] == ("gtCoarse", "label-ids")
    assert seen[2] == (Source(layout="folder", root=tmp_path / "refs", labels=tmp_path / "refs"), "train-ids")
    assert seen[3] == ("gtFine", "label-ids")
    assert runs[0].stderr == "" and "--reference is deprecated" in runs[1].stderr


def test_report_out_and_data_and_their_old_spellings(monkeypatch, labelled, city, tmp_path):
    seen = []

    def build(labelset, dest, **kwargs):
        seen.append((dest, kwargs["fine_source"]))
        return dest / "index.html"

    monkeypatch.setattr("autolabel.report.build_report", build)
    spec = f"cityscapes:{city}:train"
    new = invoke("report", labelled, "--out", tmp_path / "r", "--data", spec)
    old = invoke("report", labelled, "--dest", tmp_path / "r", "--fine", spec)
    default = invoke("report", labelled)
    assert [r.exit_code for r in (new, old, default)] == [0, 0, 0]
    assert seen[0] == seen[1] and seen[0][0] == tmp_path / "r" and seen[0][1].spec() == f"cityscapes:{city}:train"
    assert seen[2] == (labelled / "report", None)
    assert "--dest is deprecated" in old.stderr and "--fine is deprecated" in old.stderr


@pytest.mark.parametrize("command", ["train-teacher", "train-student"])
def test_training_takes_data_and_out(monkeypatch, city, labelled, tmp_path, command):
    recorder = Recorder(None)
    monkeypatch.setattr(api, command.replace("-", "_"), recorder)
    monkeypatch.setattr("autolabel.cli.train._report", lambda result: None)
    extra = ["--labels", labelled] if command == "train-student" else []
    result = invoke(command, "--data", f"cityscapes:{city}:train", "--out", tmp_path / "run", *extra)
    assert result.exit_code == 0, result.output
    assert recorder.kwargs["data"] == f"cityscapes:{city}:train" and recorder.kwargs["out"] == tmp_path / "run"


def test_a_training_data_spec_becomes_the_data_section(city, tmp_path):
    cfg = load_config(None)
    data = api.train_data(Source(layout="cityscapes", root=city, split="train"), cfg.data)
    assert (data.layout, data.root, data.train_split, data.val_split) == ("cityscapes", city, "train", "val")
    listed = api.train_data(Source(layout="filelist", root=tmp_path / "lists" / "fine.txt"), cfg.data)
    assert (listed.layout, listed.root, listed.train_split) == ("filelist", tmp_path / "lists", "fine")
    with pytest.raises(api.ConfigError, match="training set needs labels"):
        api.train_data(Source(layout="folder", root=tmp_path), cfg.data)


# ---------------------------------------------------------------------------------------------------------
# every flag is checked like the config key it sets, before anything is written


GENERATE_CASES = [
    ("--threshold", "2", "generate.threshold"),
    ("--threshold", "-1", "generate.threshold"),
    ("--batch-size", "0", "generate.batch_size"),
    ("--tile-size", "-5", "generate.tile_size"),
    ("--scales", "-1,0", "generate.scales"),
    ("--scales", "2,1", "generate.scales"),
    ("--scales", "0.001", "generate.scales"),  # the network's smallest input, not a range of the key
]


@pytest.mark.parametrize(("flag", "value", "key"), GENERATE_CASES)
def test_generate_flags_reject_what_their_config_key_rejects_and_write_nothing(
    teacher, city, tmp_path, flag, value, key
):
    base = ["generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out", tmp_path / "o"]
    by_flag = invoke(*base, flag, value)
    by_set = invoke(*base, "--set", f"{key}={value}")
    for result in (by_flag, by_set):
        assert result.exit_code == EXIT_USER_ERROR, result.output
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1
    assert by_flag.stderr.startswith(f"Error: {flag} {value}: ") and f"({key})" in by_flag.stderr
    assert key in by_set.stderr
    assert not (tmp_path / "o").exists()


TRAIN_CASES = [
    ("train-teacher", "--epochs", "0", "train.epochs"),
    ("train-teacher", "--batch-size", "0", "train.batch_size"),
    ("train-teacher", "--lr", "0", "train.lr"),
    ("train-student", "--epochs", "0", "student.epochs"),
    ("train-student", "--auto-fraction", "1.5", "student.auto_fraction"),
    ("train-student", "--threshold", "1", "student.threshold"),
    ("train-student", "--class-uniform", "-0.1", "train.class_uniform_pct"),
    ("train-student", "--drop-auto-after-epoch", "-1", "student.drop_auto_after_epoch"),
    ("train-student", "--fine-weight", "-1", "student.fine_loss_weight"),
    ("train-student", "--auto-weight", "-1", "student.auto_loss_weight"),
]


@pytest.mark.parametrize(("command", "flag", "value", "key"), TRAIN_CASES)
def test_training_flags_reject_what_their_config_key_rejects_and_write_nothing(
    city, tmp_path, command, flag, value, key
):
    base = [command, "--data", f"cityscapes:{city}:train", "--out", tmp_path / "run"]
    by_flag = invoke(*base, flag, value)
    by_set = invoke(*base, "--set", f"{key}={value}")
    for result in (by_flag, by_set):
        assert result.exit_code == EXIT_USER_ERROR and result.stderr.count("\n") == 1, result.output
    assert by_flag.stderr.startswith(f"Error: {flag} {value}: ") and f"({key})" in by_flag.stderr
    assert by_set.stderr.startswith(f"Error: --set {key}={value}: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value"), [("--tile-size", "-5"), ("--scales", "0"), ("--scales", "1,0.5")])
def test_evaluate_checks_its_model_flags_like_the_labelling_settings(teacher, city, tmp_path, flag, value):
    result = invoke("evaluate", "--checkpoint", teacher, "--data", f"cityscapes:{city}:val", "--out", tmp_path / "e",
                    flag, value)  # fmt: skip
    assert result.exit_code == EXIT_USER_ERROR and result.stderr.startswith(f"Error: {flag} {value}: ")
    assert not (tmp_path / "e").exists()


def test_rethreshold_checks_its_threshold_like_generate_threshold(labelled, tmp_path):
    result = invoke("rethreshold", labelled, "--threshold", "1.5", "--out", tmp_path / "r")
    assert result.exit_code == EXIT_USER_ERROR and "(generate.threshold)" in result.stderr
    assert not (tmp_path / "r").exists()


def test_set_takes_lists_like_the_flags_and_blames_itself_for_bad_values(tmp_path):
    cfg = load_config(None, ["generate.scales=0.5,1.0", "student.boost_classes=pole,person"])
    assert cfg.generate.scales == (0.5, 1.0) and cfg.student.boost_classes == ("pole", "person")
    assert load_config(None, ["generate.scales=1.0"]).generate.scales == (1.0,)
    config = tmp_path / "p.toml"
    config.write_text("[generate]\nthreshold = 0.7\n")
    result = invoke("show-config", config, "--set", "generate.scales=2,1")
    assert result.exit_code == EXIT_USER_ERROR and result.stderr.startswith("Error: --set generate.scales=2,1: ")
    config.write_text("[generate]\nthreshold = 7\n")
    assert invoke("show-config", config).stderr.startswith(f"Error: {config}: generate.threshold")


def test_an_output_folder_that_is_a_file_is_one_line_and_exit_2(city, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["--out", blocker], ["--out", blocker / "run"], ["--set", f"train.out_dir={blocker / 'run'}"]):
        result = invoke("train-teacher", "--data", f"cityscapes:{city}:train", *args)
        assert result.exit_code == EXIT_USER_ERROR and result.stderr.count("\n") == 1, result.output
        assert "Traceback" not in result.output and str(blocker) in result.stderr


def test_an_output_folder_nobody_may_write_in_is_one_line_and_exit_2(monkeypatch, city, tmp_path):
    import autolabel.fs

    monkeypatch.setattr(autolabel.fs.os, "access", lambda path, mode: Path(path) != tmp_path)  # as if 0555
    result = invoke("train-teacher", "--data", f"cityscapes:{city}:train", "--out", tmp_path / "run")
    assert result.exit_code == EXIT_USER_ERROR and result.stderr.count("\n") == 1
    assert f"--out {tmp_path / 'run'}: cannot write in {tmp_path} (permission denied)" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# exit codes: 0 done, 2 the user's error (on stderr), 3 finished with failed items


@pytest.fixture(scope="module")
def broken_set(tmp_path_factory, teacher, city) -> Path:
    """A label set with one error row: one of its images is not an image."""
    images = tmp_path_factory.mktemp("broken") / "images"
    images.mkdir()
    good = next((city / "leftImg8bit" / "val").glob("*/*.png"))
    shutil.copy(good, images / "good.png")
    (images / "bad.png").write_text("not a png")
    out = images.parent / "labels"
    result = invoke("generate", "--teacher", teacher, "--data", images, "--out", out, "--scales", "0.5,1.0")
    assert result.exit_code == EXIT_FINISHED_WITH_ERRORS
    assert result.stderr.count("bad.png") == 1  # each failed image is reported once
    return out


EXIT_CODES = [
    ("manifest ok", lambda p: ["manifest", p["labelled"]], 0),
    ("manifest not a label set", lambda p: ["manifest", p["city"]], 2),
    ("verify clean", lambda p: ["verify", p["labelled"]], 0),
    ("verify error rows", lambda p: ["verify", p["broken"]], 3),
    ("verify missing folder", lambda p: ["verify", p["tmp"] / "nothing"], 2),
    ("verify not a label set", lambda p: ["verify", p["city"]], 2),
    ("rethreshold off the ladder", lambda p: ["rethreshold", p["labelled"], "--threshold", "0.525"], 2),
    ("evaluate missing checkpoint", lambda p: ["evaluate", "--checkpoint", p["tmp"] / "x.pt", "--data", p["val"]], 2),
    ("evaluate both inputs", lambda p: ["evaluate", "--checkpoint", "a", "--predictions", "b", "--data", p["val"]], 2),
    ("evaluate-labels unknown data", lambda p: ["evaluate-labels", p["labelled"], "--data", "nonsense"], 2),
    ("report missing label set", lambda p: ["report", p["tmp"] / "nothing"], 2),
    (
        "generate bad teacher",
        lambda p: ["generate", "--teacher", p["tmp"] / "x.pt", "--data", p["val"], "--out", p["tmp"] / "o"],
        2,
    ),  # fmt: skip
    ("synth bad size", lambda p: ["synth", p["tmp"] / "c", "--size", "0x10"], 2),
    ("show-config bad --set", lambda p: ["show-config", "--set", "train.lr=-1"], 2),
    ("train-teacher no data", lambda p: ["train-teacher", "--out", p["tmp"] / "run"], 2),
]


@pytest.mark.parametrize(("case", "args", "code"), EXIT_CODES, ids=[c for c, _, _ in EXIT_CODES])
def test_exit_codes(case, args, code, labelled, broken_set, city, tmp_path):
    paths = {"labelled": labelled, "broken": broken_set, "city": city, "tmp": tmp_path, "val": f"cityscapes:{city}:val"}
    result = invoke(*args(paths))
    assert result.exit_code == code, (case, result.output)
    if code == EXIT_USER_ERROR:
        assert "Error:" in result.stderr and "Error:" not in result.stdout and "Traceback" not in result.output
    if code == EXIT_FINISHED_WITH_ERRORS:
        assert result.stderr.strip()


def test_generate_with_failed_images_exits_3_and_the_manifest_says_why(broken_set):
    rows = {r["id"]: r for r in labelsets.read_manifest(broken_set, status=None).to_pylist()}
    assert rows["bad"]["status"] == "error" and rows["good"]["status"] == "ok"
    result = invoke("manifest", broken_set)
    assert "1 error " in result.stdout and "error: bad:" in result.stdout


# ---------------------------------------------------------------------------------------------------------
# messages


def test_no_progress_words_on_stderr_when_it_is_not_a_terminal(teacher, city, tmp_path):
    # threshold 0.05: every pixel of the random teacher's 19 classes (max prob >= 1/19) is labelled, so no
    # low-coverage warning either
    result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:val", "--out", tmp_path / "o",
                    "--scales", "0.5,1.0", "--threshold", "0.05")  # fmt: skip
    assert result.exit_code == 0 and result.stderr == ""
    for args in (["verify", tmp_path / "o"], ["report", tmp_path / "o", "--worst", 1, "--sample", 1],
                 ["evaluate-labels", tmp_path / "o", "--data", f"cityscapes:{city}:val"]):  # fmt: skip
        run = invoke(*args)
        assert run.exit_code == 0 and run.stderr == "", (args, run.output)


def test_generate_warns_when_almost_no_pixel_is_labelled(teacher, city, tmp_path):
    result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:val", "--out", tmp_path / "o",
                    "--scales", "0.5,1.0", "--threshold", "0.95")  # fmt: skip
    assert result.exit_code == 0 and "warning: only 0.00% of the pixels carry a label" in result.stderr


def test_counts_are_singular_for_one(labelled, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(labelled, copy)
    label = next((copy / "labels").rglob("*.png"))
    label.write_bytes(label.read_bytes()[:-8])
    result = invoke("verify", copy, "--no-inputs")
    assert result.exit_code == EXIT_FINISHED_WITH_ERRORS
    assert "1 problem," in result.stdout and "0 error rows" in result.stdout


def test_manifest_of_a_set_without_rows_says_so(labelled, tmp_path):
    empty = tmp_path / "set"
    empty.mkdir()
    shutil.copy(labelled / "labelset.json", empty / "labelset.json")
    result = invoke("manifest", empty)
    assert result.exit_code == 0 and "no manifest rows yet" in result.stdout and "%" not in result.stdout


def test_dry_run_counts_the_human_labels(teacher, city, tmp_path):
    result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out",
                    tmp_path / "o", "--dry-run")  # fmt: skip
    assert "inputs: 3 images, 0 with fine labels, 3 with coarse labels" in result.stdout
    assert not (tmp_path / "o").exists()


def test_a_failed_report_names_the_out_folder_not_its_staging_folder(labelled, tmp_path, monkeypatch):
    from autolabel.errors import OutputError
    from autolabel.fs import temp_sibling

    out = tmp_path / "r"

    def failing(labelset, dest, **kwargs):
        raise OutputError(f"{temp_sibling(dest)}/assets/x.png: write failed (No space left on device)")

    monkeypatch.setattr("autolabel.report.build_report", failing)
    result = invoke("report", labelled, "--out", out)
    assert result.exit_code == EXIT_USER_ERROR
    assert result.stderr == f"Error: {out}/assets/x.png: write failed (No space left on device)\n"


def test_a_student_run_that_fails_at_the_start_leaves_no_files(city, labelled, tmp_path):
    broken = tmp_path / "set"
    shutil.copytree(labelled, broken)
    shutil.rmtree(broken / "labels")  # a label set whose label files are gone: the student fails reading them
    run = tmp_path / "run"
    result = invoke("train-student", "--data", f"cityscapes:{city}:train", "--out", run, "--labels", broken,
                    "--set", "model.width=tiny", "--set", "train.crop_size=32,32", "--set", "train.batch_size=2",
                    "--set", "train.workers=0", "--set", "train.device=cpu", "--set", "train.class_uniform_tile=32",
                    "--set", "student.drop_auto_after_epoch=1", "--set", "loss.main=ce")  # fmt: skip
    assert result.exit_code != 0
    assert not run.exists(), sorted(p.name for p in run.rglob("*"))


def test_a_student_schedule_that_never_drops_the_auto_labels_is_warned_about(monkeypatch, city, labelled, tmp_path):
    monkeypatch.setattr(api, "fit", Recorder(None))
    monkeypatch.setattr("autolabel.cli.train._report", lambda result: None)
    result = invoke("train-student", "--data", f"cityscapes:{city}:train", "--out", tmp_path / "run", "--labels",
                    labelled, "--epochs", 2, "--drop-auto-after-epoch", 2)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: student.drop_auto_after_epoch = 2 but the student trains 2 epochs" in result.stderr
    quiet = invoke("train-student", "--data", f"cityscapes:{city}:train", "--out", tmp_path / "run", "--labels",
                   labelled, "--epochs", 3, "--drop-auto-after-epoch", 2)  # fmt: skip
    assert "warning" not in quiet.stderr


def test_image_messages_say_16_bit_and_quote_our_pixel_limit(tmp_path):
    import struct
    import zlib

    from autolabel.data.io import read_image
    from autolabel.errors import DataError

    def png(width: int, height: int, depth: int, colour: int, rows: bytes | None) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        body = chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")

    rgb16 = tmp_path / "rgb16.png"
    rgb16.write_bytes(png(2, 2, 16, 2, b"".join(b"\x00" + b"\x12\x34" * 6 for _ in range(2))))
    with pytest.raises(DataError, match=r"16-bit PNG \(RGB, 48 bits per pixel\)"):
        read_image(rgb16)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png(20000, 20000, 8, 0, None))  # 400 M pixels: above Pillow's own limit too
    with pytest.raises(DataError, match="limit 64000000; raise data.max_image_pixels"):
        read_image(huge, max_pixels=64_000_000)
    with pytest.raises(DataError, match="limit 1000; raise data.max_image_pixels"):
        read_image(_small_png(tmp_path), max_pixels=1000)


def _small_png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    return path


def test_the_docs_use_only_current_option_names():
    """Every `autolabel CMD ... --opt` in README.md and docs/usage.md names a visible option of CMD."""
    text = "\n".join((REPO / name).read_text() for name in ("README.md", "docs/usage.md"))
    text = text.replace("\\\n", " ")  # shell continuation lines
    checked = 0
    for match in re.finditer(r"autolabel ([a-z-]+)((?: [^`|\n]*)?)", text):
        command, words = main.commands.get(match.group(1)), match.group(2)
        if isinstance(command, click.Group):  # `autolabel review export ...`: the subcommand's options
            sub, _, words = words.strip().partition(" ")
            command = command.commands.get(sub)
        if command is None:
            continue
        visible = {"--help"}
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                visible.update(param.opts + param.secondary_opts)
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", words):
            if option == "--nproc_per_node":
                continue
            assert option in visible, f"{match.group(0)!r}: {option} is not an option of {match.group(1)}"
            checked += 1
    assert checked > 40
