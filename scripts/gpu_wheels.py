#!/usr/bin/env python3
"""``make gpu-wheels``: wheels of what the GPU machine lacks, for ``make gpu-check`` to install offline there.

The GPU machine has its own Python 3.12 with torch + CUDA, numpy, pillow, pyarrow and click, but no zarr and
no Dask, and no network. This downloads (where pip reaches PyPI) the wheels of zarr, Dask and everything they
need beyond that into ``.whl/`` (git-ignored; small enough to travel with the working tree), for CPython 3.12
on manylinux x86-64, at the versions this environment runs, so the GPU machine runs what the tests ran. Then
it checks that they resolve with no index: ``pip install --dry-run --no-index`` of zarr and Dask from
``.whl/`` plus the packages the GPU machine already has (downloaded into ``.whl-resolve/`` for this check
only; never installed there) must install nothing from anywhere else.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# what gpu_check.py installs there: zarr and dask[distributed] with everything they need ...
PACKAGES = (
    "zarr",
    "numcodecs",
    "google-crc32c",
    "donfig",
    "dask",
    "distributed",
    "partd",
    "locket",
    "tblib",
    "zict",
    "tornado",
    "toolz",
    "cloudpickle",
    "fsspec",
    "msgpack",
    "psutil",
    "sortedcontainers",
)
# ... but these, which the machine's image has (docs: the device notes' package list)
PRESENT = ("numpy", "pyyaml", "jinja2", "markupsafe", "click", "packaging", "typing-extensions")
# pip evaluates markers such as dask's `importlib_metadata; python_version < "3.12"` for the Python it runs
# on, not for --python-version: when that is older than 3.12 the check needs these too (3.12 does not)
HOST_ONLY = ("importlib-metadata", "zipp", "lazy-importer") if sys.version_info < (3, 12) else ()
TOP_LEVEL = ("zarr", "numcodecs", "dask", "distributed")
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def target_flags() -> list[str]:
    """pip's flags for the GPU machine's interpreter: CPython 3.12, manylinux x86-64, binary wheels only."""
    flags = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for platform in PLATFORMS:
        flags += ["--platform", platform]
    return flags


def pinned(names: tuple[str, ...]) -> list[str]:
    """``name==version`` at the versions installed here."""
    return [f"{name}=={version(name)}" for name in names]


def download(requirements: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *target_flags(), "-d", str(dest)]
    subprocess.run([*cmd, *requirements], check=True)


def resolve_offline(dest: Path, present: Path) -> dict[str, str]:
    """``name -> wheel folder`` of what an offline install of the top-level packages would take."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # --isolated: no pip.conf or PIP_* find-links (a local mirror would satisfy what the GPU machine lacks)
        pip = [sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--dry-run", "--ignore-installed"]
        links = ["--no-index", "--find-links", str(dest), "--find-links", str(present)]
        out = ["--target", tmp, "--report", str(report)]
        subprocess.run([*pip, *links, *target_flags(), *out, *pinned(TOP_LEVEL)], check=True)
        installs = json.loads(report.read_text())["install"]
    return {
        item["metadata"]["name"].lower(): Path(item["download_info"]["url"].removeprefix("file://")).parent.name
        for item in installs
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl")
    parser.add_argument("--present", type=Path, default=REPO / ".whl-resolve")
    args = parser.parse_args()
    args.dest.mkdir(exist_ok=True)
    args.present.mkdir(exist_ok=True)
    for stale in args.dest.glob("*.whl"):  # one version of each: two would stop the install there
        stale.unlink()
    download(pinned(PACKAGES), args.dest)
    download(pinned(PRESENT + HOST_ONLY), args.present)
    taken = resolve_offline(args.dest, args.present)
    normal = {name.replace("_", "-") for name in PRESENT + HOST_ONLY}
    elsewhere = sorted(
        n for n, folder in taken.items() if folder != args.dest.name and n.replace("_", "-") not in normal
    )
    if elsewhere:
        print(f"gpu-wheels: an offline install would also need {elsewhere}; add them to PACKAGES", file=sys.stderr)
        return 1
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    there = sorted(n for n, folder in taken.items() if folder != args.dest.name and n.replace("_", "-") in PRESENT)
    print(
        f"{len(wheels)} wheels, {size:.1f} MiB in {args.dest}: an offline install of {', '.join(TOP_LEVEL)} "
        f"takes them and, of what the GPU machine has, {', '.join(there)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
