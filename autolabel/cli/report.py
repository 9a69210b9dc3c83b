"""`autolabel report LABELSET`: an HTML page about a label set (registered on the main group)."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.cli.base import (
    FOLDER,
    alias_option,
    check_out_dir,
    config_option,
    load_pipeline,
    main,
    progress,
    resolve_alias,
    set_option,
)
from autolabel.data.sources import SPEC_HELP
from autolabel.errors import AutolabelError, ConfigError
from autolabel.fs import TEMP_MARK


def parse_named_file(text: str, option: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named by the file stem)."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        raise ConfigError(f"{option} {text!r}: expected NAME=PATH or PATH, e.g. student=runs/s/eval.json")
    return name, Path(path)


def without_staging(message: str, out: Path) -> str:
    """A message about the report's staging folder (``.report.tmp-XXXX``), told about ``out`` instead."""
    staging = f"{out.parent / ('.' + out.name)}{TEMP_MARK}"
    while staging in message:
        start = message.index(staging)
        end = start + len(staging)
        while end < len(message) and message[end] not in "/: )'\"":
            end += 1
        message = message[:start] + str(out) + message[end:]
    return message


@main.command("report", short_help="Write an HTML report of a label set.")
@click.argument("labelset", metavar="LABELSET", type=FOLDER)
@click.option(
    "--out",
    type=FOLDER,
    default=None,
    help="Folder for index.html and its pictures [default: LABELSET/report].",
)
@click.option(
    "--evaluation",
    "evaluations",
    multiple=True,
    metavar="NAME=JSON",
    help="An `autolabel evaluate` JSON to show as a column (repeatable, in this order).",
)
@click.option(
    "--audit",
    "audits",
    multiple=True,
    metavar="NAME=JSON",
    help="An `autolabel evaluate-labels` JSON to show as a row (repeatable).",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help=f"Fine-labelled images to compare class shares with: {SPEC_HELP} "
    "[default: a Cityscapes source's train split].",
)
@config_option
@set_option("classes.preset=cityscapes")
@click.option(
    "--worst", default=12, show_default=True, type=click.IntRange(0), help="Images in the lowest-mean-confidence sheet."
)
@click.option("--sample", default=12, show_default=True, type=click.IntRange(0), help="Images in the random sheet.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random sheet.")
@click.option(
    "--review",
    "review_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A review.json of `autolabel review export`: list its selection with scores and links.",
)
@click.option(
    "--calibration",
    "calibration_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A calibration.json of `autolabel calibrate`: draw its reliability diagram and per-class "
    "precision/coverage curves, and mark the classes below its target precision.",
)
@alias_option("--dest", "--out", "--out DIR", type=FOLDER)
@alias_option("--fine", "--data", "--data SPEC")
@click.pass_context
def report(
    ctx: click.Context,
    labelset: Path,
    out: Path | None,
    evaluations: tuple[str, ...],
    audits: tuple[str, ...],
    data_spec: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    worst: int,
    sample: int,
    seed: int,
    review_file: Path | None,
    calibration_file: Path | None,
) -> None:
    """Write an HTML report of the label set LABELSET: counts, errors, time, class shares vs human labels,
    coverage vs threshold, and picture sheets (image | auto label | confidence | attention | coarse).

    --config (with --set) gives the class list's names and colours; the label set's own are used without.
    """
    out = resolve_alias(ctx, "--out", "out", out)
    data_spec = resolve_alias(ctx, "--data", "data_spec", data_spec)
    from autolabel.classes import class_set_from_config
    from autolabel.data.sources import parse_source
    from autolabel.report import ReportOptions, build_report

    cfg = load_pipeline(config_path, overrides) if config_path or overrides else None
    classes = class_set_from_config(cfg.classes) if cfg is not None else None
    named = dict(parse_named_file(t, "--evaluation") for t in evaluations)
    checks = dict(parse_named_file(t, "--audit") for t in audits)
    fine = parse_source(data_spec, flag="--data", config=cfg.data if cfg else None) if data_spec else None
    dest = check_out_dir(out) if out is not None else labelset / "report"
    steps = ("overview", "reference labels", "confidence", "sheets", "page")
    try:
        with progress(length=len(steps), label="report") as bar:
            page = build_report(
                labelset,
                dest,
                evaluations=named,
                classes=classes,
                audits=checks,
                fine_source=fine,
                options=ReportOptions(worst=worst, sample=sample, seed=seed),
                on_step=lambda name: bar.update(1),
                review=review_file,
                calibration=calibration_file,
            )
    except AutolabelError as exc:
        raise type(exc)(without_staging(str(exc), dest)) from None
    click.echo(f"report: {page}")
