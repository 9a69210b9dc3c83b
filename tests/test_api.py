"""The public API: what `import autolabel` offers, and the labelling script of docs/api.md run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

import autolabel
from autolabel.classes import CITYSCAPES
from autolabel.config import ModelConfig
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parent.parent


def test_the_package_lists_its_api_and_every_name_resolves():
    assert {"generate_labels", "train_teacher", "train_student", "evaluate_checkpoint", "audit_labels",
            "load_config", "read_labelset"} <= set(autolabel.__all__)  # fmt: skip
    for name in autolabel.__all__:
        assert getattr(autolabel, name) is not None
    for name in autolabel.__all__:
        value = getattr(autolabel, name)
        if callable(value) and not isinstance(value, type):
            assert value.__doc__ and "Args:" in value.__doc__, name


def test_a_wheel_would_ship_every_module_of_the_package():
    # setup.cfg says `packages = find:`; setuptools' own finder leaves out a folder without __init__.py, and with
    # it every module there (an installed wheel then fails to import what the editable install finds)
    from setuptools import find_packages

    shipped = set(find_packages(str(REPO), include=["autolabel*"]))
    folders = {p.parent.relative_to(REPO).as_posix().replace("/", ".") for p in (REPO / "autolabel").rglob("*.py")}
    assert folders - shipped == set()


def test_importing_the_package_does_not_import_torch():
    code = "import autolabel, sys; print('torch' in sys.modules, len(autolabel.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split()[0] == "False"


def test_the_documented_labelling_script_runs(tmp_path, monkeypatch, synthetic_city):
    script = re.search(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S).group(1)
    assert len([line for line in script.splitlines() if line.strip()]) == 5
    # the script's paths, rooted in a temporary demo folder: a tiny city and a tiny (untrained) teacher
    city = synthetic_city(train=1, val=1, extra=3, size=(64, 32), seed=4)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "city").symlink_to(city)
    (tmp_path / "pipelines").symlink_to(REPO / "pipelines")
    cfg = ModelConfig(width="tiny", num_classes=19, infer_scales=(0.5, 1.0))
    torch.manual_seed(0)
    teacher = tmp_path / "runs" / "demo" / "teacher" / "last.pt"
    save_checkpoint(teacher, build_model(cfg).eval(), cfg, CITYSCAPES.names)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(script, "docs/api.md", "exec"), namespace)
    assert namespace["result"].ok == 3 and not namespace["result"].errors
    assert namespace["manifest"].num_rows == 3
    assert autolabel.verify_labels(tmp_path / "runs" / "demo" / "labels_api").ok
