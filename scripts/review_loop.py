"""The review loop on a synthetic city, with the real clients standing in for the human (issue #14's measurement).

For every format: ``review export`` of the ``--top`` worst images of LABELS into WORK/<format>/package, a
"correction" written by the format's independent client (tests/tools/review_client.py in the tools venv:
datumaro for the CVAT formats, Label Studio's SDK for its JSON) that replaces each selected image's label
with the city's true fine label, ``review import`` into WORK/<format>/labels, ``verify``, and an audit of
the new label set against the true fine labels. The three imports must agree (same corrections sha256,
same label files). Writes WORK/review_loop.json.

    python scripts/review_loop.py LABELS CITY --work runs/review [--top 20] [--by confidence,disagreement]
        [--tools .venv-review/bin/python]

Everything is written under ``--work``. Train a student on WORK/cvat-cityscapes/labels with
``autolabel train-student --labels WORK/cvat-cityscapes/labels ...`` (see docs/review.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.data.io import read_label, write_label_png
from autolabel.evaluate.audit import audit_labelset
from autolabel.fs import write_json
from autolabel.labelset.verify import verify_labelset
from autolabel.review.export import export_review
from autolabel.review.importing import import_review
from autolabel.review.package import read_package, tool_label_name

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "tools" / "review_client.py"
FORMATS = {"cvat-cityscapes": "cityscapes", "cvat-mask": "voc_segmentation", "label-studio": None}


def true_fine(city: Path, image: str) -> np.ndarray:
    """The true fine label (train ids) of a Cityscapes-layout image path."""
    path = Path(image)
    split, town = path.parent.parent.name, path.parent.name
    label = city / "gtFine" / split / town / path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    return read_label(label, CITYSCAPES.label_to_train_lut())


def corrections(city: Path, package: Path, folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "names.json").write_text(json.dumps(names))
    for entry in read_package(package).images:
        write_label_png(folder / f"{entry['key']}.png", true_fine(city, entry["image"]))
    return folder


def summary(report: dict) -> dict:
    return {k: report[k] for k in ("coverage", "accuracy", "miou", "images")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", type=Path)
    parser.add_argument("city", type=Path)
    parser.add_argument("--work", type=Path, default=Path("runs/review"))
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--by", default="confidence,disagreement")
    parser.add_argument("--tools", default=str(REPO / ".venv-review" / "bin" / "python"))
    args = parser.parse_args(argv)
    work = args.work.resolve()  # the client runs from /, so every path it gets is absolute
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"labels": str(args.labels), "top": args.top, "by": args.by, "formats": {}}
    result["audit_before"] = summary(audit_labelset(args.labels, "gtFine", CITYSCAPES))
    for fmt, dm_format in FORMATS.items():
        start = time.perf_counter()
        folder = work / fmt
        shutil.rmtree(folder, ignore_errors=True)
        package = folder / "package"
        export_review(args.labels, package, top=args.top, by=args.by, fmt=fmt)
        names = list(CITYSCAPES.names) if dm_format is None else [tool_label_name(n) for n in CITYSCAPES.names]
        edits = corrections(args.city, package, folder / "truth", names)
        exported = folder / ("export.json" if dm_format is None else "export")
        client = ["dm", dm_format, package] if dm_format else ["ls", package / "tasks.json"]
        subprocess.run(
            [args.tools, str(CLIENT), *map(str, client), str(edits), str(exported), str(folder / "seen")],
            check=True,
            cwd="/",
        )
        imported = import_review(args.labels, exported, folder / "labels", review=package / "review.json")
        verified = verify_labelset(folder / "labels")
        meta = labelset.read_labelset(folder / "labels")
        result["formats"][fmt] = {
            "selected": [e["id"] for e in read_package(package).images],
            "corrected": len(imported.corrected),
            "pixels_changed": sum(imported.pixels_changed.values()),
            "labelset_id": imported.labelset_id,
            "corrections_sha256": meta["review"]["corrections_sha256"],
            "verify_ok": verified.ok,
            "verify_problems": verified.problems[:5],
            "audit_after": summary(audit_labelset(folder / "labels", "gtFine", CITYSCAPES)),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(fmt, json.dumps(result["formats"][fmt]["audit_after"]), flush=True)
    digests = {f["corrections_sha256"] for f in result["formats"].values()}
    result["formats_agree"] = len(digests) == 1
    write_json(work / "review_loop.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "formats"}, indent=2))
    return 0 if result["formats_agree"] and all(f["verify_ok"] for f in result["formats"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
