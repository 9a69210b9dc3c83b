"""One device per process: device selection and shard selection for every launcher, precision resolution."""

from __future__ import annotations

import os

import pytest
import torch

from autolabel.errors import ConfigError
from autolabel.generate.sharding import Shard, shard_from_env
from autolabel.models.device import (
    autocast,
    keep_freed_memory,
    parse_precision,
    resolve_precision,
    select_device,
)
from autolabel.train.distributed import job_from_env

CPU = torch.device("cpu")


def cuda(i: int) -> torch.device:
    return torch.device("cuda", i)


# What each launcher sets for one process. Names as the launchers spell them: torchrun sets RANK, WORLD_SIZE,
# LOCAL_RANK; srun sets SLURM_PROCID, SLURM_NTASKS, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_ID (and
# CUDA_VISIBLE_DEVICES with --gpus-per-task); mpirun sets OMPI_COMM_WORLD_*; an array task SLURM_ARRAY_*.
TORCHRUN_3_OF_8 = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}
TORCHRUN_NODE2 = {"RANK": "11", "WORLD_SIZE": "16", "LOCAL_RANK": "3"}  # second node of two, 8 GPUs each
SRUN_5_OF_8 = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
               "SLURM_STEP_ID": "0"}  # fmt: skip
SRUN_GPU_PER_TASK = {**SRUN_5_OF_8, "CUDA_VISIBLE_DEVICES": "5"}  # srun --gpus-per-task=1: its own GPU only
MPIRUN_2_OF_4 = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "2"}
# a batch script's environment (sbatch) names task 0 of the allocation though the script is no srun task
ARRAY_TASK_6 = {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_JOB_ID": "42", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"}  # fmt: skip
ARRAY_TASK_ONE_GPU = {**ARRAY_TASK_6, "CUDA_VISIBLE_DEVICES": "2"}  # --gres=gpu:1
BATCH_SCRIPT = {"SLURM_JOB_ID": "42", "SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0"}  # no step
DASK_CUDA_WORKER = {"CUDA_VISIBLE_DEVICES": "3,4,5,6,7,0,1,2"}  # dask-cuda: the worker's own GPU first


@pytest.mark.parametrize(
    "option, env, count, slot, expected",
    [
        # no GPU
        ("auto", {}, 0, None, CPU),
        ("cpu", TORCHRUN_3_OF_8, 8, 3, CPU),
        ("auto", TORCHRUN_3_OF_8, 0, None, CPU),
        # one process, several GPUs: the first
        ("auto", {}, 8, None, cuda(0)),
        ("cuda", {}, 1, None, cuda(0)),
        ("cuda:5", {}, 8, None, cuda(5)),
        ("cuda:5", TORCHRUN_3_OF_8, 8, None, cuda(5)),  # an explicit index wins over the launcher
        # torchrun --nproc_per_node 8 (one node, two nodes): LOCAL_RANK, not RANK
        ("auto", TORCHRUN_3_OF_8, 8, 3, cuda(3)),
        ("cuda", TORCHRUN_NODE2, 8, 11, cuda(3)),
        # srun -n 8 over two nodes: SLURM_LOCALID, with or without per-task GPU binding
        ("auto", SRUN_5_OF_8, 4, 5, cuda(1)),
        ("auto", SRUN_GPU_PER_TASK, 1, 5, cuda(0)),
        # mpirun
        ("auto", MPIRUN_2_OF_4, 4, None, cuda(2)),
        # make -j 4 generate NUM_SHARDS=4 on a 4-GPU node: the shard index; 8 shards on 4 GPUs share them
        ("auto", {}, 4, 2, cuda(2)),
        ("auto", {}, 4, 6, cuda(2)),
        # a SLURM array task with its own GPU (--gres=gpu:1), and without GPU binding on an 8-GPU node
        ("auto", ARRAY_TASK_ONE_GPU, 1, 6, cuda(0)),
        ("auto", ARRAY_TASK_6, 8, 6, cuda(6)),
        # make -j 4 generate NUM_SHARDS=4 inside an sbatch script on a 4-GPU node: its SLURM_LOCALID=0 is no rank
        ("auto", BATCH_SCRIPT, 4, 3, cuda(3)),
        # dask-cuda workers: the first visible GPU is the worker's own
        ("auto", DASK_CUDA_WORKER, 8, None, cuda(0)),
        ("auto", {"CUDA_VISIBLE_DEVICES": "2"}, 1, None, cuda(0)),
    ],
)
def test_every_launcher_puts_each_process_on_its_own_gpu(option, env, count, slot, expected):
    assert select_device(option, env, count, slot=slot) == expected


def test_processes_of_one_node_get_distinct_gpus_under_each_launcher():
    torchrun = {select_device("auto", {"LOCAL_RANK": str(r)}, 8) for r in range(8)}
    srun = {select_device("auto", {**SRUN_5_OF_8, "SLURM_LOCALID": str(r)}, 8) for r in range(8)}
    shards = {select_device("auto", {}, 4, slot=i) for i in range(4)}
    assert torchrun == srun == {cuda(i) for i in range(8)}
    assert shards == {cuda(i) for i in range(4)}


@pytest.mark.parametrize(
    "option, env, count, match",
    [
        ("cuda", {}, 0, "sees no CUDA device"),
        ("cuda", {"CUDA_VISIBLE_DEVICES": ""}, 0, "CUDA_VISIBLE_DEVICES=''"),
        ("cuda:8", {}, 8, "0 <= N < 8"),
        ("cuda:x", {}, 8, "0 <= N < 8"),
        ("gpu", {}, 8, "expected auto, cpu, cuda or cuda:N"),
        ("cpu:1", {}, 8, "expected auto, cpu, cuda or cuda:N"),
        # more processes than GPUs on a node, with nothing giving each its own
        ("auto", {"LOCAL_RANK": "8"}, 8, "LOCAL_RANK=8, but this process sees 8 GPU"),
        ("auto", {**SRUN_5_OF_8, "SLURM_LOCALID": "2"}, 1, "SLURM_LOCALID=2"),
        ("auto", {"LOCAL_RANK": "one"}, 8, "LOCAL_RANK='one': expected a non-negative integer"),
    ],
)
def test_impossible_placements_are_refused_naming_what_is_wrong(option, env, count, match):
    with pytest.raises(ConfigError, match=match):
        select_device(option, env, count)


def test_a_worker_that_cannot_tell_its_gpu_refuses_instead_of_taking_gpu_0():
    # `dask worker --nworkers 8` on an 8-GPU node without dask-cuda: every worker sees all eight
    with pytest.raises(ConfigError, match="sees 8 GPUs and no CUDA_VISIBLE_DEVICES"):
        select_device("auto", {}, 8, own_gpu_required=True)
    assert select_device("auto", DASK_CUDA_WORKER, 8, own_gpu_required=True) == cuda(0)
    assert select_device("auto", {}, 1, own_gpu_required=True) == cuda(0)  # a 1-GPU machine is unambiguous
    assert select_device("auto", {}, 0, own_gpu_required=True) == CPU


@pytest.mark.parametrize(
    "env, shard",
    [
        ({}, None),
        (TORCHRUN_3_OF_8, Shard(3, 8)),
        (TORCHRUN_NODE2, Shard(11, 16)),
        (SRUN_5_OF_8, Shard(5, 8)),
        ({**SRUN_5_OF_8, "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "4"}, Shard(1, 4)),  # a step of 4 in 8
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_STEPID": "3"}, Shard(1, 4)),  # older srun
        (BATCH_SCRIPT, None),  # the batch script is one process: it labels everything
        (ARRAY_TASK_6, Shard(6, 8)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(2, 3)),
        # an array of srun steps / of torchrun jobs: task a of A, process r of R -> a * R + r of A * R
        ({**ARRAY_TASK_6, "SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"}, Shard(13, 16)),
        ({**ARRAY_TASK_6, "RANK": "1", "WORLD_SIZE": "4"}, Shard(25, 32)),
    ],
)
def test_each_launcher_names_the_shard_of_its_process(env, shard):
    assert shard_from_env(env) == shard


def test_srun_shards_cover_every_image_exactly_once():
    ids = [f"img{i}" for i in range(200)]
    shards = [shard_from_env({**SRUN_5_OF_8, "SLURM_PROCID": str(r)}) for r in range(8)]
    owners = [[s.index for s in shards if s.contains(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == set(range(8))


def test_bad_launcher_values_name_the_variables():
    with pytest.raises(ConfigError, match="SLURM_PROCID=8, SLURM_STEP_NUM_TASKS=8"):
        shard_from_env({**SRUN_5_OF_8, "SLURM_PROCID": "8"})
    with pytest.raises(ConfigError, match="RANK='x'"):
        shard_from_env({"RANK": "x", "WORLD_SIZE": "2"})


@pytest.mark.parametrize(
    "env, job",
    [
        ({}, (0, 1)),
        (TORCHRUN_NODE2, (11, 16)),
        ({**SRUN_5_OF_8, "MASTER_ADDR": "node1"}, (5, 8)),
        (SRUN_5_OF_8, (0, 1)),  # srun without MASTER_ADDR: nothing says where rank 0 listens
        ({**BATCH_SCRIPT, "MASTER_ADDR": "node1"}, (0, 1)),  # the batch script is no step
        ({**MPIRUN_2_OF_4, "MASTER_ADDR": "node1"}, (2, 4)),
        ({**ARRAY_TASK_6, "MASTER_ADDR": "node1"}, (0, 1)),
    ],
)
def test_training_joins_the_job_its_launcher_started(env, job):
    assert job_from_env(env) == job


# ---------------------------------------------------------------------------------------------------------
# precision


@pytest.mark.parametrize(
    "option, device, bf16, expected",
    [
        ("auto", CPU, True, None),
        ("auto", cuda(0), True, torch.bfloat16),
        ("auto", cuda(0), False, torch.float16),  # e.g. a V100
        ("fp32", cuda(0), True, None),
        ("fp16", CPU, True, torch.float16),
        ("bf16", CPU, True, torch.bfloat16),
        ("bf16", cuda(0), True, torch.bfloat16),
    ],
)
def test_precision_resolves_per_device(option, device, bf16, expected):
    assert resolve_precision(option, device, bf16_supported=bf16) == expected


def test_unsupported_or_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="does not support bfloat16"):
        resolve_precision("bf16", cuda(0), bf16_supported=False)
    with pytest.raises(ConfigError, match="expected one of auto, fp32, bf16, fp16"):
        parse_precision("half")


def test_fp32_means_no_autocast_at_all():
    with autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(CPU, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_the_cpu_allocator_setting_is_left_alone_for_gpu_processes(monkeypatch):
    from autolabel.models import device as runtime

    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert runtime.keep_freed_memory(cuda(0)) is False
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert keep_freed_memory() is False  # a GPU node: the CLI's call at start-up does nothing
    assert "MALLOC_MMAP_MAX_" not in os.environ
