"""Helpers of the reliability suite: running the CLI in subprocesses, snapshots of label sets and trees.

Everything is small (64x32 images, the ``tiny`` HRNet) so that killing and rerunning real subprocesses many
times stays within the CI budget.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from autolabel import labelset
from autolabel.config import ModelConfig
from autolabel.fs import is_temp_name
from autolabel.labelset.verify import verify_labelset

SPLIT = "train_extra"
N_EXTRA = 24
IMAGE_SIZE = (64, 32)  # (W, H)
TEACHER_CFG = ModelConfig(width="tiny", num_classes=19, infer_scales=(0.5, 1.0))
BATCH_SIZE = 2
# small chunks and batches: many manifest parts and many write moments for a kill to land in
GENERATE_SETTINGS = [
    "--scales",
    "0.5,1.0",
    "--threshold",
    "0.1",
    "--batch-size",
    str(BATCH_SIZE),
    "--device",
    "cpu",
    "--set",
    "generate.chunk_size=4",
]


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: one thread each (the machine is shared), no stray shard variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE")
    }
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def autolabel_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "autolabel", *args]


def run_cli(*args: str, code: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``autolabel ARGS`` in a fresh process; check its exit code unless ``code`` is None."""
    proc = subprocess.run(autolabel_cmd(*args), env=cli_env(), capture_output=True, text=True, timeout=timeout)
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def generate_args(teacher: Path, city: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "--teacher",
        str(teacher),
        "--dataset",
        f"cityscapes:{city}:{SPLIT}",
        "--out",
        str(out),
        *GENERATE_SETTINGS,
        *extra,
    ]


def temp_leftovers(root: Path) -> list[Path]:
    """Temporary files/folders an interrupted atomic write would leave."""
    return [p for p in Path(root).rglob(".*") if is_temp_name(p.name)]


def labelset_state(out: Path) -> dict[str, object]:
    """What must be identical between two runs of one label set: every label and confidence file's bytes,
    labelset.json, and the merged manifest without its timing columns."""
    out = Path(out)
    files = {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and p.relative_to(out).parts[0] in (labelset.LABELS_DIR, "confidence.zarr", labelset.LABELSET_FILE)
    }
    labelset.merge_manifest(out)  # what `autolabel manifest OUT` does
    merged = pq.read_table(out / labelset.MERGED_MANIFEST)
    rows = merged.drop_columns(list(labelset.TIMING_COLUMNS)).to_pylist()
    return {"files": files, "rows": rows}


def assert_verified(out: Path) -> None:
    """What `autolabel verify OUT` checks (in this process: a CLI start costs seconds), with no problems."""
    report = verify_labelset(out)
    assert report.ok, report.problems[:10]


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (symlinks not followed) -> a digest of what it is: file bytes, link target,
    or 'dir'."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                snap[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                snap[rel] = "dir"
            else:
                snap[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snap


def invoke(*args: str, code: int | None = 0):
    """Run ``autolabel ARGS`` in this process (click's runner: no interpreter start); check its exit code."""
    from click.testing import CliRunner

    from autolabel.cli import main

    result = CliRunner().invoke(main, list(args))
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.output[-3000:], result.exception)
    return result


def write_images(folder: Path, names: list[str], seed: int = 0, size: tuple[int, int] = IMAGE_SIZE) -> None:
    """Smooth random RGB images (so the teacher's labels vary over each one) under ``folder``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in names:
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(rng.integers(0, 256, (4, 8, 3), dtype=np.uint8))
        small.resize(size, Image.BILINEAR).save(path)


def folder_args(teacher: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "--teacher",
        str(teacher),
        "--images",
        str(images),
        "--out",
        str(out),
        *GENERATE_SETTINGS,
        *extra,
    ]
