"""`autolabel evaluate` (a checkpoint on labelled images) and `autolabel evaluate-labels` (audit a label
set)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from autolabel.api import audit_labels, evaluate_checkpoint
from autolabel.cli.base import LazyBar, config_option, load_pipeline, main, set_option
from autolabel.data.sources import SPEC_HELP
from autolabel.evaluate.audit import audit_table
from autolabel.fs import write_json
from autolabel.metrics import SegMetrics


def _scales(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        scales = tuple(sorted(float(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected numbers separated by commas, e.g. 0.5,1.0,2.0") from None
    if not scales or any(s <= 0 for s in scales):
        raise click.BadParameter(f"{text!r}: expected positive scales, e.g. 0.5,1.0,2.0")
    return scales


def _write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        write_json(path, payload)


@main.command("evaluate")
@click.option(
    "--checkpoint",
    "checkpoint",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint written by train-teacher/train-student (or import-checkpoint).",
)
@click.option("--data", "data_spec", required=True, metavar="SPEC", help=f"What to evaluate on: {SPEC_HELP}.")
@click.option("--scales", default=None, metavar="S,...", help="Inference scales (default: the model's).")
@click.option("--flip", is_flag=True, help="Average with the horizontally flipped prediction.")
@click.option("--tile-size", type=int, default=0, show_default=True, help="Sliding-window size (0 = whole image).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]), show_default=True)
@click.option(
    "--precision",
    default="auto",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    show_default=True,
    help="Autocast of the forward (auto: bf16/fp16 on a GPU, fp32 on the CPU).",
)
@click.option(
    "--save-predictions",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write predictions to DIR/trainIds/<id>.png and, in the naming of the official Cityscapes "
    "evaluation, DIR/labelIds/<city>_<seq>_<frame>_leftImg8bit.png.",
)
@click.option("--train-ids", is_flag=True, help="The labels hold train ids (0..C-1, 255) instead of dataset label ids.")
@click.option(
    "--out",
    "out_json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the metrics as JSON here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@config_option
@set_option
def evaluate(
    checkpoint: Path,
    data_spec: str,
    scales: str | None,
    flip: bool,
    tile_size: int,
    device: str,
    precision: str,
    save_predictions: Path | None,
    train_ids: bool,
    out_json: Path | None,
    as_json: bool,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Per-class IoU and mIoU of a checkpoint on labelled images."""
    cfg = load_pipeline(config_path, overrides)
    bar = LazyBar("evaluate")
    try:
        payload = evaluate_checkpoint(
            checkpoint,
            data_spec,
            config=cfg,
            scales=_scales(scales),
            flip=flip,
            tile_size=tile_size,
            device=device,
            precision=precision,
            labels_are_train_ids=train_ids,
            save_predictions=save_predictions,
            on_total=bar.start,
            on_image=bar.advance,
        )
    finally:
        bar.close()
    _write_json(out_json, payload)
    click.echo(json.dumps(payload, indent=2) if as_json else SegMetrics.from_dict(payload).table())


@main.command("evaluate-labels")
@click.argument("labelset", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--reference",
    required=True,
    metavar="gtFine|gtCoarse|DIR",
    help="Cityscapes gtFine/gtCoarse next to each image, or a folder holding <id>.png labels.",
)
@click.option("--train-ids", is_flag=True, help="Reference labels hold train ids instead of dataset label ids.")
@click.option(
    "--out",
    "out_json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the audit (incl. the threshold sweep) as JSON here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@config_option
@set_option
def evaluate_labels(
    labelset: Path,
    reference: str,
    train_ids: bool,
    out_json: Path | None,
    as_json: bool,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Audit an auto-label set against human labels: precision/recall/IoU, coverage, threshold sweep."""
    cfg = load_pipeline(config_path, overrides)
    bar = LazyBar("audit")
    try:
        report = audit_labels(
            labelset, reference, config=cfg, reference_train_ids=train_ids, on_total=bar.start, on_image=bar.advance
        )
    finally:
        bar.close()
    _write_json(out_json, report)
    click.echo(json.dumps(report, indent=2) if as_json else audit_table(report))
