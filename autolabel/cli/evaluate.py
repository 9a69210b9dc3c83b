"""`autolabel evaluate` (a checkpoint on labelled images) and `autolabel evaluate-labels` (audit a label
set)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from autolabel.classes import class_set_from_config
from autolabel.cli.base import config_option, load_pipeline, main, progress, set_option
from autolabel.data.sources import SPEC_HELP, parse_source, require_labels
from autolabel.errors import CheckpointError
from autolabel.evaluate.audit import audit_labelset, audit_table
from autolabel.evaluate.predictions import PredictionWriter
from autolabel.fs import atomic_write_bytes
from autolabel.labelset import read_manifest
from autolabel.models.checkpoint import load_checkpoint
from autolabel.models.device import resolve_device
from autolabel.models.evaluation import EvalSettings, evaluate_model


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
        atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


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
    save_predictions: Path | None,
    train_ids: bool,
    out_json: Path | None,
    as_json: bool,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Per-class IoU and mIoU of a checkpoint on labelled images."""
    cfg = load_pipeline(config_path, overrides)
    classes = class_set_from_config(cfg.classes)
    torch_device = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=torch_device, expected_num_classes=classes.num_classes)
    if ckpt.class_names != classes.names:
        raise CheckpointError(
            f"{checkpoint}: trained for classes {list(ckpt.class_names)}, but the config's "
            f"classes are {list(classes.names)} (pass the training --config)"
        )
    source = parse_source(data_spec, config=cfg.data, split=cfg.data.val_split)
    samples = require_labels(source.discover(), data_spec)
    settings = EvalSettings(
        scales=_scales(scales) or ckpt.model_cfg.infer_scales,
        flip=flip,
        tile_size=tile_size,
        mean=cfg.data.mean,
        std=cfg.data.std,
        max_pixels=cfg.data.max_image_pixels,
    )
    writer = PredictionWriter(save_predictions, classes) if save_predictions is not None else None
    with progress(length=len(samples), label="evaluate") as bar:
        metrics = evaluate_model(
            ckpt.model,
            samples,
            None if train_ids else classes.label_to_train_lut(),
            classes.names,
            device=torch_device,
            settings=settings,
            on_prediction=writer.write if writer is not None else None,
            on_image=lambda: bar.update(1),
        )
    payload = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": ckpt.sha256,
        "data": data_spec,
        "images": len(samples),
        "scales": list(settings.scales),
        "flip": flip,
        **metrics.to_dict(),
    }
    _write_json(out_json, payload)
    click.echo(json.dumps(payload, indent=2) if as_json else metrics.table())


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
    classes = class_set_from_config(cfg.classes)
    with progress(length=read_manifest(labelset).num_rows, label="audit") as bar:
        report = audit_labelset(
            labelset,
            reference,
            classes,
            reference_train_ids=train_ids,
            max_pixels=cfg.data.max_image_pixels,
            on_image=lambda: bar.update(1),
        )
    _write_json(out_json, report)
    click.echo(json.dumps(report, indent=2) if as_json else audit_table(report))
