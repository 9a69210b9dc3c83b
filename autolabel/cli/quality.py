"""`autolabel calibrate` (how far to trust a teacher, per-class thresholds) and `autolabel rethreshold` (a label
set at other thresholds, from its confidence store)."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.cli.base import (
    FOLDER,
    LazyBar,
    check_out_dir,
    config_option,
    finished_with_errors,
    load_pipeline,
    main,
    plural,
    set_option,
    values_option,
)
from autolabel.data.sources import SPEC_HELP

LABELSET = click.argument("labelset", metavar="LABELSET", type=FOLDER)


@main.command("calibrate", short_help="Fit a teacher's temperature, choose per-class thresholds.", compute=True)
@click.option(
    "--teacher",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Teacher checkpoint; it runs as generate runs it ([generate] scales, flip, tiling, precision).",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help=f"Labelled images to calibrate on: {SPEC_HELP}. Default: the config's data.val_split.",
)
@click.option("--out", type=FOLDER, required=True, help="Folder to write calibration.json into (created).")
@click.option(
    "--target-precision",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.95,
    show_default=True,
    help="Per class, the lowest threshold whose precision reaches this.",
)
@click.option(
    "--per-class-temperature/--no-per-class-temperature",
    default=False,
    show_default=True,
    help="One temperature per predicted class instead of one scalar for all.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Labelled pixels sampled (deterministically) for the fit and the curves.",
)
@click.option(
    "--min-pixels",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Sampled pixels a class needs for its own threshold (fewer: the global one).",
)
@values_option("What the label files of --data hold: the dataset's label ids (Cityscapes labelIds) or train ids.")
@config_option
@set_option("generate.scales=[0.5,1.0,2.0]")
def calibrate_cmd(
    teacher: Path,
    data_spec: str | None,
    out: Path,
    target_precision: float,
    per_class_temperature: bool,
    max_pixels: int,
    min_pixels: int,
    values: str,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Calibrate TEACHER on labelled images: temperature T (NLL), ECE (15 bins) before and after, reliability
    diagram, per-class precision and coverage over thresholds, and per-class thresholds reaching
    --target-precision; all into OUT/calibration.json, for `generate --calibration` and `rethreshold
    --calibration`.

    \b
    Examples:
      autolabel calibrate --teacher t.pt --data cityscapes:/data/cs:val --out cal
      autolabel generate --teacher t.pt --data SPEC --calibration cal/calibration.json --out labels
    """
    cfg = load_pipeline(config_path, overrides)
    if data_spec is None and config_path is None and cfg.data.root is None:
        raise click.UsageError("name the labelled images: --data SPEC, or --config with data.root")
    check_out_dir(out)
    from autolabel import api

    bar = LazyBar("calibrating")
    try:
        payload = api.calibrate_teacher(
            teacher,
            data_spec or "config",
            out,
            config=cfg,
            target_precision=target_precision,
            per_class_temperature=per_class_temperature,
            max_pixels=max_pixels,
            min_pixels=min_pixels,
            values=values,  # type: ignore[arg-type]
            on_total=bar.start,
            on_image=bar.advance,
        )
    finally:
        bar.close()
    click.echo(calibration_table(payload))
    click.echo(f"-> {out / 'calibration.json'}")


def calibration_table(payload: dict) -> str:
    """Temperature, ECE and the chosen thresholds as plain text."""
    t = payload["temperature"]
    shown = f"{t:.4g}" if isinstance(t, float) else "per class " + ", ".join(f"{v:.3g}" for v in t)
    chosen = payload["thresholds"]
    lines = [
        f"temperature {shown}; ECE ({payload['ece']['bins']} bins) {payload['ece']['before']:.4f} -> "
        f"{payload['ece']['after']:.4f}; {payload['sample']['pixels']} pixels of {payload['images']} images",
        f"target precision {payload['target_precision']:g}: global threshold {chosen['calibrated']['global']:g} "
        f"(uncalibrated {chosen['uncalibrated']['global']:g})",
    ]
    width = max(len(n) for n in payload["classes"])
    lines.append(f"{'class':<{width}}  thr.  (uncal.)  pixels")
    for name in payload["classes"]:
        note = " fallback" if name in chosen["fallback_classes"] else ""
        note += " unreached" if name in chosen["unreached_classes"] else ""
        calibrated, raw = chosen["calibrated"]["classes"][name], chosen["uncalibrated"]["classes"][name]
        pixels = payload["curves"]["after"][name]["pixels"]
        lines.append(f"{name:<{width}}  {calibrated:.2f}  ({raw:.2f})  {pixels:7d}{note}")
    return "\n".join(lines)


@main.command("rethreshold", short_help="Re-threshold a label set, no teacher needed.")
@LABELSET
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="A global threshold on the label set's grid (labelset.json 'ladder_available'), below or above its own.",
)
@click.option(
    "--class-thresholds",
    default=None,
    metavar="FILE|NAME=T,...",
    help="Per-class thresholds: road=0.9,car=0.8 or a JSON/TOML file of them (others: --threshold or as now).",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="calibrate's calibration.json for this set's teacher: its per-class thresholds (rounded up to the grid).",
)
@click.option(
    "--portion",
    type=float,
    default=None,
    help="CBST: per class, keep the most confident share P of the pixels predicted as that class.",
)
@click.option(
    "--out",
    type=FOLDER,
    default=None,
    help="Folder of the new label set [default: LABELSET-<id prefix> next to LABELSET].",
)
@click.option(
    "--in-place/--no-in-place", default=False, help="Rewrite LABELSET itself instead of writing a new label set."
)
@click.option("--overwrite", is_flag=True, help="Replace a different label set already in --out.")
def rethreshold_cmd(
    labelset: Path,
    threshold: float | None,
    class_thresholds: str | None,
    calibration: Path | None,
    portion: float | None,
    out: Path | None,
    in_place: bool,
    overwrite: bool,
) -> None:
    """Re-threshold LABELSET from its confidence store (no teacher needed): the same labels a fresh
    `generate` at those thresholds would write. The result is a new label set naming LABELSET as its parent,
    verified.

    \b
    Examples:
      autolabel rethreshold labels --threshold 0.3 --out labels-0.3
      autolabel rethreshold labels --calibration cal/calibration.json
      autolabel rethreshold labels --portion 0.5 --out labels-cbst
    """
    from autolabel import api
    from autolabel.cli.base import Flag, apply_flags
    from autolabel.config import PipelineConfig

    if threshold is not None:
        apply_flags(PipelineConfig(), [Flag("--threshold", "generate.threshold", threshold)])  # 0 <= T < 1
    if out is not None:
        check_out_dir(out)
    bar = LazyBar("re-thresholding")
    try:
        result = api.rethreshold_labels(
            labelset,
            threshold=threshold,
            class_thresholds=class_thresholds,
            calibration=calibration,
            portion=portion,
            out=out,
            in_place=in_place,
            overwrite=overwrite,
            on_total=bar.start,
            on_image=bar.advance,
        )
    finally:
        bar.close()
    chosen = result.thresholds
    how = chosen.source["kind"] if chosen is not None else "?"
    click.echo(
        f"re-thresholded {plural(result.images, 'image')} ({how}): label set {result.labelset_id} in {result.out}"
    )
    if chosen is not None and len(set(chosen.per_class)) > 1:
        click.echo("thresholds: " + ", ".join(f"{t:g}" for t in chosen.per_class))
    for problem in result.problems[:20]:
        click.echo(f"problem: {problem}", err=True)
    if result.errors or result.problems:
        finished_with_errors(
            f"{plural(result.errors, 'image')} could not be re-thresholded (error rows in the manifest); "
            f"{plural(len(result.problems), 'problem')} found verifying the result"
        )
