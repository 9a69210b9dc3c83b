"""Two shard jobs of one label set writing into the same OUT at the same time: union complete, no clobbering."""

from __future__ import annotations

import subprocess

import pytest

from autolabel import labelset

from .helpers import N_EXTRA, assert_verified, autolabel_cmd, cli_env, generate_args, labelset_state


def _without_shard(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "shard"} for r in rows]


@pytest.mark.slow
def test_two_shards_at_once_into_one_out(teacher, city, reference, tmp_path):
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            autolabel_cmd(*generate_args(teacher, city, out, "--shard", f"{i}/2")),
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (stdout, stderr[-2000:])
    rows = labelset.read_all_rows(out).to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N_EXTRA
    shards = {r["shard"] for r in rows}
    assert shards == {"0/2", "1/2"}  # both jobs really did part of the work
    assert_verified(out)
    state = labelset_state(out)
    assert state["files"] == reference["files"]
    assert _without_shard(state["rows"]) == _without_shard(reference["rows"])
