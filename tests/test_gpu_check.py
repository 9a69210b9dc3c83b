"""``make gpu-check`` and ``make gpu-wheels`` on a machine without a GPU: what can be checked here is."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load("gpu_check")
gpu_wheels = load("gpu_wheels")


def test_without_cuda_it_says_so_and_runs_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"cuda": False, "message": "no CUDA device: nothing was run"}
    assert not (tmp_path / "work").exists()


def test_only_the_missing_packages_are_installed_never_torch(tmp_path):
    names = [
        "zarr-3.1.6-py3-none-any.whl",
        "torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "nvidia_cudnn_cu13-9.0-py3-none-manylinux_2_27_x86_64.whl",
        "numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl",
        "dask-2026.8.0-py3-none-any.whl",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    wheels = gpu_check.installable_wheels(tmp_path)
    assert [w.name for w in wheels] == ["dask-2026.8.0-py3-none-any.whl", "zarr-3.1.6-py3-none-any.whl"]
    cmd = gpu_check.pip_install_command("python3", wheels, Path("/tmp/site"))
    assert cmd[:4] == ["python3", "-m", "pip", "install"]
    for flag in ("--no-index", "--no-deps", "--target"):
        assert flag in cmd
    assert cmd[cmd.index("--target") + 1] == "/tmp/site"
    assert [a for a in cmd if a.endswith(".whl")] == [str(w) for w in wheels]


def test_subprocesses_find_the_installed_packages_first():
    env = gpu_check.with_pythonpath({"PYTHONPATH": "/a", "X": "1"}, Path("/site"), "/repo")
    assert env == {"PYTHONPATH": "/site:/repo:/a", "X": "1"}


@pytest.mark.parametrize(
    "reports, distinct, problem",
    [
        (
            [
                {"name": "a", "device": "cuda:0", "peak_bytes": [5, 0]},
                {"name": "b", "device": "cuda:1", "peak_bytes": [0, 7]},
            ],
            True,
            None,
        ),
        # the bug this project had: every process on GPU 0
        (
            [
                {"name": "a", "device": "cuda:0", "peak_bytes": [5, 0]},
                {"name": "b", "device": "cuda:0", "peak_bytes": [5, 0]},
            ],
            True,
            "b and a share cuda:0",
        ),
        # each worker sees its own GPU as cuda:0: told apart by the physical id
        (
            [
                {"name": "w0", "device": "cuda:0", "physical": "GPU-1", "peak_bytes": [5]},
                {"name": "w1", "device": "cuda:0", "physical": "GPU-2", "peak_bytes": [3]},
            ],
            True,
            None,
        ),
        ([{"name": "a", "device": "cuda:1", "peak_bytes": [9, 5]}], False, "also allocated memory on GPU [0]"),
        ([{"name": "a", "device": "cuda:1", "peak_bytes": [0, 0]}], False, "allocated nothing there"),
        ([{"name": "a", "device": "cpu", "peak_bytes": [0]}], False, "not on a GPU"),
    ],
)
def test_wrong_placements_are_found(reports, distinct, problem):
    problems = gpu_check.placement_problems(reports, distinct=distinct)
    assert (problems == []) if problem is None else any(problem in p for p in problems), problems


def test_label_agreement_and_its_refusal_of_different_image_sets():
    a = {"x": np.zeros((2, 2), np.uint8), "y": np.ones((2, 2), np.uint8)}
    b = {"x": np.zeros((2, 2), np.uint8), "y": np.array([[1, 1], [1, 0]], np.uint8)}
    assert gpu_check.agreement(a, b) == 7 / 8
    with pytest.raises(gpu_check.CheckFailed, match="different images"):
        gpu_check.agreement(a, {"x": a["x"]})


def test_probe_reports_are_one_file_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    gpu_check.write_report(tmp_path, {"device": "cuda:1"})
    monkeypatch.setenv("RANK", "0")
    gpu_check.write_report(tmp_path, {"device": "cuda:0"})
    assert gpu_check.read_reports(tmp_path) == [{"device": "cuda:0"}, {"device": "cuda:1"}]


def test_the_wheels_are_for_the_gpu_machines_python():
    flags = gpu_wheels.target_flags()
    assert flags[flags.index("--python-version") + 1] == "3.12" and "--only-binary=:all:" in flags
    assert "manylinux_2_28_x86_64" in flags
    assert all(r.partition("==")[2] for r in gpu_wheels.pinned(gpu_wheels.PACKAGES))  # the versions run here


def test_the_wheel_list_covers_everything_zarr_and_dask_need_on_python_3_12():
    environment = {
        "python_version": "3.12",
        "python_full_version": "3.12.3",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "extra": "",
    }
    listed = {canonicalize_name(n) for n in gpu_wheels.PACKAGES + gpu_wheels.PRESENT}
    missing = set()
    for name in gpu_wheels.PACKAGES:
        for text in requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(environment):
                if canonicalize_name(req.name) not in listed:
                    missing.add(f"{req.name} (for {name})")
    assert not missing


@pytest.mark.slow
def test_a_rehearsal_on_the_cpu_runs_every_section(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check.py"),
            "--rehearse",
            "--work",
            str(tmp_path),
            "--budget",
            "900",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], report.get("failures")
    for section in ("devices", "train", "generate", "dask", "shards", "ddp", "w48"):
        assert "error" not in report[section] and "skipped" not in report[section], section
    assert report["generate"]["fp32"]["labels_equal_to_fp32"] == 1.0
    assert report["dask"]["labels_equal_to_in_process"] == 1.0
    assert len(report["shards"]["torchrun"]) == len(report["ddp"]["ranks"]) == 2
