"""The CPU allocator setting: freed large blocks are reused instead of faulted in again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from autolabel.models.device import ALLOCATOR_ENV

# page faults of a 3-scale forward of the tiny teacher at 256x512: its 2.0x logits (19 x 512 x 1024 floats,
# 40 MB) are over glibc's largest mmap threshold, so without the setting every forward faults them in anew
PROBE = """
import json, os, resource, sys
import torch
from autolabel.config import ModelConfig
from autolabel.models import build_model
from autolabel.models.device import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
torch.set_num_threads(1)
model = build_model(ModelConfig(width="tiny", num_classes=19, infer_scales=(0.5, 1.0, 2.0))).eval()
images = torch.zeros(1, 3, 256, 512)
with torch.inference_mode():
    for _ in range(3):  # the heap grows to its steady size over the first forwards
        model(images)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(images)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults,
                  "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}))
"""


def _probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_large_blocks_are_reused_and_children_inherit_the_setting():
    off, on = _probe("off"), _probe("on")
    assert off["faults"] > 10_000  # 40 MB = 10k pages, faulted in again in every forward
    assert on["applied"] and on["faults"] < off["faults"] / 4  # typically 0-4k against 40k
    assert on["env"] == ALLOCATOR_ENV and off["env"] == {}


def test_a_users_own_allocator_choice_is_left_alone(monkeypatch):
    from autolabel.models import device as runtime

    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert runtime.keep_freed_memory() is False
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
