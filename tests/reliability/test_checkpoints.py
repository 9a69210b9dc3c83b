"""Bad teacher checkpoints are refused before any work, with a message naming the file; no code in them runs."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from autolabel.cli import main
from autolabel.config import ModelConfig
from autolabel.errors import EXIT_USER_ERROR
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint

from .helpers import GENERATE_SETTINGS, SPLIT


class RunsCode:
    """Unpickling this creates ``marker``: the proof that a loader executed code from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def truncated(teacher: Path, dest: Path) -> None:
    data = teacher.read_bytes()
    dest.write_bytes(data[: len(data) // 2])


def wrong_class_count(teacher: Path, dest: Path) -> None:
    cfg = ModelConfig(width="tiny", num_classes=5, infer_scales=(0.5, 1.0))
    save_checkpoint(dest, build_model(cfg), cfg, [f"c{i}" for i in range(5)])


def wrong_architecture(teacher: Path, dest: Path) -> None:
    """Tiny-HRNet weights under a checkpoint that says DeepLabV3+ (the keys cannot fit)."""
    payload = torch.load(teacher, weights_only=True)
    payload["model_config"] = {**payload["model_config"], "arch": "deeplabv3plus"}
    torch.save(payload, dest)


def torch_pickle_bomb(teacher: Path, dest: Path) -> None:
    payload = torch.load(teacher, weights_only=True)
    payload["metadata"] = {"note": RunsCode(dest.with_suffix(".marker"))}
    torch.save(payload, dest)


def plain_pickle_bomb(teacher: Path, dest: Path) -> None:
    dest.write_bytes(pickle.dumps(RunsCode(dest.with_suffix(".marker"))))


def legacy_torch_pickle_bomb(teacher: Path, dest: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"state_dict": RunsCode(dest.with_suffix(".marker"))}, buffer, _use_new_zipfile_serialization=False)
    dest.write_bytes(buffer.getvalue())


def nan_weights(teacher: Path, dest: Path) -> None:
    """One NaN in one weight (a diverged run): refused at load, naming the tensor."""
    payload = torch.load(teacher, weights_only=True)
    payload["state_dict"]["ocr.cls_head.weight"].view(-1)[3] = float("nan")
    torch.save(payload, dest)


CASES = {
    "truncated": (truncated, "truncated or corrupt"),
    "wrong_class_count": (wrong_class_count, "5 classes, expected 19"),
    "wrong_architecture": (wrong_architecture, "key"),
    "torch_pickle_bomb": (torch_pickle_bomb, "could run code"),
    "plain_pickle_bomb": (plain_pickle_bomb, "not a readable checkpoint"),  # not a torch file at all
    "legacy_torch_pickle_bomb": (legacy_torch_pickle_bomb, "could run code"),
    "nan_weights": (nan_weights, "'ocr.cls_head.weight' holds 1 non-finite value(s) (NaN)"),
}


@pytest.mark.parametrize("workers", [None, 2], ids=["in-process", "dask"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_checkpoint_is_refused_before_any_work(case, workers, teacher, city, tmp_path):
    make, phrase = CASES[case]
    bad = tmp_path / f"{case}.pt"
    make(teacher, bad)
    out = tmp_path / "out"
    # a Cityscapes config so that the run expects the 19 Cityscapes classes
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[data]\nroot = "{city}"\n[generate]\nsplit = "{SPLIT}"\n')
    args = ["generate", "--teacher", str(bad), "--config", str(config), "--out", str(out), *GENERATE_SETTINGS]
    if workers:
        args += ["--workers", str(workers)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_USER_ERROR, (result.output, result.exception)
    assert str(bad) in result.output and phrase in result.output, result.output
    assert "Traceback" not in result.output
    assert not bad.with_suffix(".marker").exists(), "code inside the checkpoint was executed"
    assert not out.exists(), "work started before the checkpoint was checked"


def test_the_marker_class_really_runs_code_when_unpickled(tmp_path):
    """The bombs above are live: an unsafe loader would create the marker."""
    bomb = tmp_path / "bomb.pt"
    plain_pickle_bomb(Path(), bomb)
    pickle.loads(bomb.read_bytes())
    assert bomb.with_suffix(".marker").read_text() == "pwned"


def test_the_good_teacher_passes_the_same_checks(teacher, tmp_path):
    """Control: the unmodified checkpoint is accepted by the same command (dry run, nothing written)."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 32), (90, 120, 30)).save(images / "a.png")
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--teacher",
            str(teacher),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "out"),
            "--dry-run",
            *GENERATE_SETTINGS,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 to do" in result.output
