"""Decode/encode pool sizes: from the cores this process may use (affinity, Slurm), or the user's numbers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from autolabel import api
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import GenerateConfig, ModelConfig, load_config, replace
from autolabel.errors import ConfigError
from autolabel.generate import pools
from autolabel.generate.pools import MAX_THREADS, pool_sizes, usable_cores
from autolabel.models.build import build_model
from autolabel.models.checkpoint import save_checkpoint


@pytest.fixture
def cores(monkeypatch):
    """Set the CPU affinity this process reports: ``cores(n)``."""

    def set_affinity(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_affinity


def test_usable_cores_is_the_affinity_not_the_machine(cores):
    cores(6)
    assert usable_cores({}) == 6


def test_slurm_cpus_per_task_narrows_the_affinity_but_never_widens_it(cores):
    cores(16)
    assert usable_cores({"SLURM_CPUS_PER_TASK": "4"}) == 4
    cores(3)
    assert usable_cores({"SLURM_CPUS_PER_TASK": "8"}) == 3


def test_a_malformed_slurm_variable_falls_back_to_the_affinity_with_a_warning(cores, caplog):
    cores(5)
    with caplog.at_level(logging.WARNING, logger="autolabel.generate.pools"):
        assert usable_cores({"SLURM_CPUS_PER_TASK": "4(x2)"}) == 5
    assert "SLURM_CPUS_PER_TASK" in caplog.text


def test_usable_cores_reads_the_process_environment_by_default(cores, monkeypatch):
    cores(12)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "7")
    assert usable_cores() == 7
    assert pool_sizes("cuda").cores == 7


def test_on_a_gpu_every_core_but_the_drivers_decodes_or_encodes(cores):
    cores(16)
    sizes = pool_sizes("cuda")
    assert sizes.cores == 16
    assert sizes.decode + sizes.encode == 15  # one core left to drive the device
    assert sizes.encode > sizes.decode >= 1  # encoding costs more per image than decoding (bench host_work)


def test_pools_grow_with_the_cores_up_to_a_cap():
    small, large, huge = (pool_sizes("cuda", cores=n) for n in (2, 8, 1000))
    assert (small.decode, small.encode) == (1, 1)
    assert small.decode <= large.decode and small.encode < large.encode
    assert huge.decode == huge.encode == MAX_THREADS


def test_on_the_cpu_the_model_keeps_the_cores(cores):
    cores(32)
    assert (pool_sizes("cpu").decode, pool_sizes("cpu").encode) == (1, 1)


def test_given_pool_sizes_are_kept_whatever_the_cores(cores):
    cores(64)
    sizes = pool_sizes("cuda", decode_workers=3, encode_workers=5)
    assert (sizes.decode, sizes.encode) == (3, 5)
    assert pool_sizes("cuda", decode_workers=2).encode == pool_sizes("cuda").encode  # the other one still auto
    assert pool_sizes("cpu", encode_workers=0).encode == 1  # 0 counts as 1, as before


def test_worker_options_are_unset_by_default_and_checked_like_any_key():
    assert GenerateConfig().decode_workers is None and GenerateConfig().encode_workers is None
    assert replace(GenerateConfig(), decode_workers=4, encode_workers=6).encode_workers == 6
    with pytest.raises(ConfigError, match=r"generate\.decode_workers: 0 is out of range"):
        replace(GenerateConfig(), decode_workers=0)
    with pytest.raises(ConfigError, match=r"generate\.encode_workers: -1 is out of range"):
        replace(GenerateConfig(), encode_workers=-1)
    with pytest.raises(ConfigError, match=r"generate\.encode_workers"):
        replace(GenerateConfig(), encode_workers="many")
    loaded = load_config(None, ["generate.decode_workers=3"])
    assert loaded.generate.decode_workers == 3 and loaded.generate.encode_workers is None


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny", infer_scales=(0.5, 1.0))
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)
    return path


def test_generate_flags_set_the_worker_keys(monkeypatch, teacher, tmp_path):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        return api.GenerateResult(labelset_id="x", planned=0, skipped=0)

    monkeypatch.setattr(api, "generate_labels", record)
    args = ["generate", "--teacher", str(teacher), "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*args, "--decode-workers", "3", "--encode-workers", "7"])
    assert result.exit_code == 0, result.output
    assert (seen["config"].generate.decode_workers, seen["config"].generate.encode_workers) == (3, 7)
    bad = CliRunner().invoke(main, [*args, "--decode-workers", "0"])
    assert bad.exit_code == 2 and "--decode-workers 0" in bad.output and "generate.decode_workers" in bad.output


def test_process_chunks_sizes_unset_pools_from_the_teachers_device(monkeypatch, teacher, tmp_path, synthetic_city):
    from autolabel.data.datasets import discover_folder
    from autolabel.generate.runner import GenerateJob, run_generate

    asked = []
    real = pools.pool_sizes

    def spy(device_type, decode_workers=None, encode_workers=None, **kw):
        asked.append((device_type, decode_workers, encode_workers))
        return real(device_type, decode_workers, encode_workers, **kw)

    monkeypatch.setattr("autolabel.generate.runner.pool_sizes", spy)
    city = synthetic_city(train=1, val=0, extra=0, size=(64, 32), seed=3)
    samples = discover_folder(city / "leftImg8bit")
    job = GenerateJob(teacher=teacher, out=tmp_path / "labels", generate=GenerateConfig(device="cpu", scales=(1.0,)))
    result = run_generate(job, samples)
    assert result.ok == len(samples) >= 1
    assert asked == [("cpu", None, None)]
