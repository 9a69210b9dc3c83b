"""`autolabel evaluate` (a checkpoint, or a folder of predictions, on labelled images) and
`autolabel evaluate-labels` (audit a label set against human labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from autolabel.cli.base import (
    FOLDER,
    Flag,
    LazyBar,
    alias_option,
    check_like,
    check_out_dir,
    config_option,
    flag_errors,
    load_pipeline,
    main,
    note,
    parse_list,
    resolve_alias,
    set_option,
    values_option,
)
from autolabel.config import GenerateConfig, PipelineConfig
from autolabel.data.sources import IMAGES_HELP, SPEC_HELP
from autolabel.errors import ConfigError

EVALUATION_JSON = "evaluation.json"  # what `evaluate --out DIR` writes
AUDIT_JSON = "audit.json"  # what `evaluate-labels --out DIR` writes
REFERENCE_KINDS = ("gtFine", "gtCoarse")


def json_option(what: str) -> Any:
    """``--json FILE``: write the JSON there; ``--json -`` (or a bare ``--json``) prints it instead of the table."""
    return click.option(
        "--json",
        "json_path",
        default=None,
        is_flag=False,
        flag_value="-",
        metavar="FILE",
        help=f"Write {what} as JSON to FILE; '-' (or --json alone) prints it instead of the table.",
    )


def out_option(name: str) -> Any:
    return click.option(
        "--out",
        type=FOLDER,
        default=None,
        help=f"Folder to write {name} into (created).",
    )


def _outputs(out: Path | None, json_path: str | None, name: str) -> tuple[Path | None, Path | None, bool]:
    """(folder, JSON file, print JSON?) from --out/--json; an old ``--out FILE.json`` still names the file."""
    if out is not None and out.suffix == ".json" and not out.is_dir():
        note(f"--out {out}: --out is now a folder; writing the JSON file as --json {out} does")
        if json_path not in (None, "-"):
            raise click.UsageError("give --json FILE, not also --out FILE.json")
        return None, out, json_path == "-"
    if out is not None:
        check_out_dir(out)
    file = Path(json_path) if json_path not in (None, "-") else out / name if out is not None else None
    if file is not None and file.is_dir():
        raise ConfigError(f"--json {file}: is a folder; expected a file name")
    return out, file, json_path == "-"


def _emit(payload: dict[str, Any], file: Path | None, as_json: bool, table: str) -> None:
    from autolabel.fs import write_json

    if file is not None:
        write_json(file, payload)
    click.echo(json.dumps(payload, indent=2) if as_json else table)


def _default_data(spec: str | None, config_path: Path | None, cfg: PipelineConfig, split_key: str) -> str:
    if spec is not None:
        return spec
    if config_path is not None or cfg.data.root is not None:
        return "config"
    raise click.UsageError(f"name the labelled images: --data SPEC, or --config with data.root ({split_key})")


@main.command("evaluate", short_help="mIoU of a checkpoint or a predictions folder.", compute=True)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A checkpoint written by train-teacher/train-student (or import-checkpoint).",
)
@click.option(
    "--predictions",
    type=FOLDER,
    default=None,
    help="Instead of --checkpoint: a folder of prediction PNGs named <id>.png or by Cityscapes name "
    "(<city>_<seq>_<frame>*.png), e.g. what --save-predictions wrote, or another tool's.",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help=f"The labelled images: {SPEC_HELP}. Default: the config's data.val_split. {IMAGES_HELP}.",
)
@values_option("What the label files of --data hold: the dataset's label ids (Cityscapes labelIds) or train ids.")
@click.option(
    "--prediction-values",
    type=click.Choice(["train-ids", "label-ids"]),
    default=None,
    help="What --predictions PNGs hold [default: train ids in a --save-predictions folder, else as --values].",
)
@click.option(
    "--scales", default=None, metavar="S,...", help="Inference scales, e.g. 0.5,1.0,2.0 (default: the model's)."
)
@click.option("--flip/--no-flip", default=False, show_default=True, help="Average with the flipped prediction.")
@click.option(
    "--tile-size", type=int, default=0, show_default=True, help="Sliding-window size in pixels (0 = whole images)."
)
@click.option(
    "--device",
    default="auto",
    type=click.Choice(["auto", "cpu", "cuda"]),
    show_default=True,
    help="Where the model runs.",
)
@click.option(
    "--precision",
    default="auto",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    show_default=True,
    help="Autocast of the forward (auto: bf16/fp16 on a GPU, fp32 on the CPU).",
)
@click.option(
    "--save-predictions",
    type=FOLDER,
    default=None,
    help="Write predictions to DIR/trainIds/<id>.png and, in the naming of the official Cityscapes "
    "evaluation, DIR/labelIds/<city>_<seq>_<frame>_leftImg8bit.png.",
)
@click.option(
    "--official",
    is_flag=True,
    help="Also score with the official Cityscapes script (cityscapesscripts; IoU and instance-level iIoU) "
    "on label-id predictions (saved with --save-predictions or --out, or given with --predictions).",
)
@out_option(f"{EVALUATION_JSON} (and, with --official, predictions/)")
@json_option("the metrics")
@config_option
@set_option("data.val_split=val")
@alias_option("--train-ids", "--values", "--values train-ids", is_flag=True, convert=lambda v: "train-ids")
@click.pass_context
def evaluate(
    ctx: click.Context,
    checkpoint: Path | None,
    predictions: Path | None,
    data_spec: str | None,
    values: str,
    prediction_values: str | None,
    scales: str | None,
    flip: bool,
    tile_size: int,
    device: str,
    precision: str,
    save_predictions: Path | None,
    official: bool,
    out: Path | None,
    json_path: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Per-class IoU and mIoU on labelled images, of a checkpoint or of a folder of predictions.

    \b
    Examples:
      autolabel evaluate --checkpoint run/best.pt --data cityscapes:/data/cs:val --out eval
      autolabel evaluate --predictions eval/predictions --data cityscapes:/data/cs:val --official
    """
    values = resolve_alias(ctx, "--values", "values", values)
    if (checkpoint is None) == (predictions is None):
        raise click.UsageError("give either --checkpoint CKPT or --predictions DIR")
    model_only = {"--scales": scales, "--tile-size": tile_size or None, "--save-predictions": save_predictions}
    if flip:
        model_only["--flip"] = True
    if predictions is not None and any(v is not None for v in model_only.values()):
        used = ", ".join(k for k, v in model_only.items() if v is not None)
        raise click.UsageError(f"{used}: these run a model; they do not apply to --predictions")
    flags = [
        Flag("--scales", "generate.scales", parse_list(scales, "--scales")),
        Flag("--tile-size", "generate.tile_size", tile_size),
    ]
    for flag in flags:  # no config keys of their own: the rules of the labelling settings they mirror
        check_like(flag, GenerateConfig())
    cfg = load_pipeline(config_path, overrides)
    data = _default_data(data_spec, config_path, cfg, "data.val_split")
    folder, file, as_json = _outputs(out, json_path, EVALUATION_JSON)
    if official and checkpoint is not None and save_predictions is None:
        if folder is None:
            raise click.UsageError("--official scores saved predictions: give --out DIR or --save-predictions DIR")
        save_predictions = folder / "predictions"
    if save_predictions is not None:
        check_out_dir(save_predictions, "--save-predictions")
    from autolabel import api
    from autolabel.metrics import SegMetrics

    bar = LazyBar("evaluate")
    try:
        with flag_errors(flags):
            if checkpoint is not None:
                payload = api.evaluate_checkpoint(
                    checkpoint,
                    data,
                    config=cfg,
                    scales=flags[0].value,
                    flip=flip,
                    tile_size=tile_size,
                    device=device,
                    precision=precision,
                    values=values,  # type: ignore[arg-type]
                    save_predictions=save_predictions,
                    official=official,
                    on_total=bar.start,
                    on_image=bar.advance,
                )
            else:
                assert predictions is not None
                payload = api.evaluate_predictions(
                    predictions,
                    data,
                    config=cfg,
                    values=values,  # type: ignore[arg-type]
                    prediction_values=prediction_values,  # type: ignore[arg-type]
                    official=official,
                    on_total=bar.start,
                    on_image=bar.advance,
                )
    finally:
        bar.close()
    table = SegMetrics.from_dict(payload).table()
    if "official" in payload:
        from autolabel.evaluate.official import official_table

        table += "\n\n" + official_table(payload["official"])
    _emit(payload, file, as_json, table)


@main.command("evaluate-labels", short_help="Audit a label set against human labels.")
@click.argument("labelset", metavar="LABELSET", type=FOLDER)
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help="The human labels to compare with: gtFine or gtCoarse (Cityscapes, next to each of the set's images), "
    f"or labelled images matched to the set's by id or Cityscapes name: {SPEC_HELP} [default: gtFine].",
)
@values_option("What the human label files hold: the dataset's label ids (Cityscapes labelIds) or train ids.")
@out_option(AUDIT_JSON)
@json_option("the audit (with the threshold sweep)")
@config_option
@set_option("classes.preset=cityscapes")
@alias_option(
    "--reference",
    "--data",
    "--data gtFine|gtCoarse|SPEC (a folder DIR of <id>.png labels is folder:DIR:DIR)",
    convert=lambda v: v if v in REFERENCE_KINDS else _label_folder(v),
)
@alias_option("--train-ids", "--values", "--values train-ids", is_flag=True, convert=lambda v: "train-ids")
@click.pass_context
def evaluate_labels(
    ctx: click.Context,
    labelset: Path,
    data_spec: str | None,
    values: str,
    out: Path | None,
    json_path: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Audit the auto-label set LABELSET against human labels: per-class precision, recall and IoU where
    both label a pixel, coverage, and the same at every threshold of its confidence ladder.

    \b
    Examples:
      autolabel evaluate-labels labels --data gtCoarse --out audit
      autolabel evaluate-labels labels --data folder:/data/photos:/data/reviewed --values train-ids
    """
    data = resolve_alias(ctx, "--data", "data_spec", data_spec) or "gtFine"
    values = resolve_alias(ctx, "--values", "values", values)
    cfg = load_pipeline(config_path, overrides)
    _, file, as_json = _outputs(out, json_path, AUDIT_JSON)
    from autolabel import api
    from autolabel.evaluate.audit import audit_table

    bar = LazyBar("audit")
    try:
        report = api.audit_labels(
            labelset,
            data,
            config=cfg,
            values=values,  # type: ignore[arg-type]
            on_total=bar.start,
            on_image=bar.advance,
        )
    finally:
        bar.close()
    _emit(report, file, as_json, audit_table(report))


def _label_folder(path: str) -> Any:
    """The old ``--reference DIR`` (labels ``DIR/<id>.png``) as a source: DIR's PNGs, each its own label."""
    from autolabel.data.sources import Source

    folder = Path(path).resolve()
    return Source(layout="folder", root=folder, labels=folder)
