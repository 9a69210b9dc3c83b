#!/usr/bin/env python3
"""Label quality on a synthetic city: calibrate a teacher on val, label train_extra, audit against its true
fine labels (docs/label_quality.md).

    python scripts/label_quality.py --teacher runs/demo/teacher/last.pt --city runs/demo/city --out runs/quality

The city must have gtFine for train_extra (``autolabel synth --extra-fine``). Steps, each skipped when its
output exists (rerun to resume):

1. ``calibrate`` on val at the target precision -> OUT/cal/calibration.json;
2. ``generate`` train_extra at 0.3 (the bottom of the store's grid) -> OUT/low, and with the calibration ->
   OUT/calibrated;
3. ``rethreshold`` OUT/low at 0.5, at 0.9, with the calibration's uncalibrated per-class thresholds, and by
   portion 0.5 (CBST) -> OUT/global-0.5, OUT/global-0.9, OUT/per-class, OUT/cbst-0.5;
4. ``evaluate-labels`` of each against train_extra's gtFine -> OUT/table.json and a Markdown table printed.

Student trainings on each set (the issue's 3 seeds x 4 sets) are not part of this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import autolabel
from autolabel.cli.base import shipped_pipeline
from autolabel.fs import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--city", type=Path, required=True, help="a synthetic city with gtFine for train_extra")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--target-precision", type=float, default=0.95)
    parser.add_argument("--portion", type=float, default=0.5)
    parser.add_argument("--config", default="demo", help="pipeline config (name or file) [demo]")
    args = parser.parse_args()
    start = time.perf_counter()
    root = f"data.root={json.dumps(str(args.city))}"

    def config(*overrides: str) -> Any:
        return autolabel.load_config(shipped_pipeline(args.config), [root, *overrides])

    cfg, cfg_low = config(), config("generate.threshold=0.3")
    out: Path = args.out
    cal_dir = out / "cal"
    if not (cal_dir / "calibration.json").exists():
        autolabel.calibrate_teacher(
            args.teacher, f"cityscapes:{args.city}:val", cal_dir, config=cfg, target_precision=args.target_precision
        )
    calibration = cal_dir / "calibration.json"
    extra = f"cityscapes:{args.city}:train_extra"
    _generate(args.teacher, extra, out / "low", cfg_low)
    cal_cfg = config(f"generate.calibration={json.dumps(str(calibration))}")
    _generate(args.teacher, extra, out / "calibrated", cal_cfg)
    derived = {
        "global-0.5": {"threshold": 0.5},
        "global-0.9": {"threshold": 0.9},
        "per-class": {"calibration": calibration},
        f"cbst-{args.portion:g}": {"portion": args.portion},
    }
    for folder, request in derived.items():
        if not (out / folder / "labelset.json").exists():
            autolabel.rethreshold_labels(out / "low", out=out / folder, **request)
    sets = [*derived, "calibrated"]
    reference = f"cityscapes:{args.city}:train_extra"
    audits = {s: autolabel.audit_labels(out / s, reference, config=cfg) for s in sets}
    doc: dict[str, Any] = {
        "teacher": str(args.teacher),
        "calibration": _calibration_summary(calibration),
        "sets": {s: _audit_summary(audits[s], out / s) for s in sets},
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out / "table.json", doc)
    print(markdown(doc))


def _generate(teacher: Path, data: str, out: Path, cfg: Any) -> None:
    result = autolabel.generate_labels(teacher, data, out, config=cfg)
    if result.errors:
        raise SystemExit(f"{out}: {len(result.errors)} images could not be labelled")


def _calibration_summary(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return {
        "temperature": doc["temperature"],
        "ece_before": doc["ece"]["before"],
        "ece_after": doc["ece"]["after"],
        "pixels": doc["sample"]["pixels"],
        "target_precision": doc["target_precision"],
        "thresholds_calibrated": doc["thresholds"]["calibrated"]["classes"],
        "thresholds_uncalibrated": doc["thresholds"]["uncalibrated"]["classes"],
        "fallback_classes": doc["thresholds"]["fallback_classes"],
        "unreached_classes": doc["thresholds"]["unreached_classes"],
    }


def _audit_summary(audit: dict[str, Any], folder: Path) -> dict[str, Any]:
    meta = autolabel.read_labelset(folder)
    classes = audit["classes"]
    total = sum(v["reference_pixels"] for v in classes.values()) or 1
    return {
        "labelset_id": meta["labelset_id"],
        "coverage": audit["coverage"],
        "accuracy": audit["accuracy"],
        "miou": audit["miou"],
        "classes": {
            n: {
                "precision": v["precision"],
                "coverage": v["coverage"],
                "iou": v["iou"],
                "share": v["reference_pixels"] / total,
                "threshold": meta["class_thresholds"][n],
            }
            for n, v in classes.items()
        },
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def markdown(doc: dict[str, Any]) -> str:
    cal = doc["calibration"]
    t = cal["temperature"]
    lines = [
        f"temperature {t if isinstance(t, list) else round(t, 4)}; ECE (15 bins) {cal['ece_before']:.4f} -> "
        f"{cal['ece_after']:.4f} on {cal['pixels']} val pixels",
        "",
        "| label set | precision (accuracy) % | coverage % | mIoU % |",
        "| --- | --- | --- | --- |",
    ]
    for name, s in doc["sets"].items():
        lines.append(f"| {name} | {_pct(s['accuracy'])} | {_pct(s['coverage'])} | {_pct(s['miou'])} |")
    names = list(next(iter(doc["sets"].values()))["classes"])
    lines += ["", "| class | share % | " + " | ".join(f"{s} prec. / cov." for s in doc["sets"]) + " |"]
    lines.append("| --- | --- |" + " --- |" * len(doc["sets"]))
    for n in names:
        share = next(iter(doc["sets"].values()))["classes"][n]["share"]
        cells = [
            f"{_pct(s['classes'][n]['precision'])} / {_pct(s['classes'][n]['coverage'])}" for s in doc["sets"].values()
        ]
        lines.append(f"| {n} | {100 * share:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
