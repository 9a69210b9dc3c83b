"""`autolabel report OUT`: an HTML page about a label set (registered on the main group)."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.classes import class_set_from_config
from autolabel.cli.base import load_pipeline, main, progress
from autolabel.data.sources import parse_source
from autolabel.errors import ConfigError
from autolabel.report import ReportOptions, build_report


def parse_named_file(text: str, option: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named by the file stem)."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        raise ConfigError(f"{option} {text!r}: expected NAME=PATH or PATH, e.g. student=runs/s/eval.json")
    return name, Path(path)


@main.command("report")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for index.html and its pictures [default: OUT/report].",
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
    help="An `autolabel evaluate-labels --out` JSON to show as a row (repeatable).",
)
@click.option(
    "--fine",
    "fine_spec",
    default=None,
    metavar="LAYOUT:ROOT:SPLIT",
    help="Fine-labelled split for the class shares [default: a Cityscapes source's train split].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline TOML whose class list (names, colours, label ids) to use.",
)
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
def report(
    out: Path,
    dest: Path | None,
    evaluations: tuple[str, ...],
    audits: tuple[str, ...],
    fine_spec: str | None,
    config_path: Path | None,
    worst: int,
    sample: int,
    seed: int,
    review_file: Path | None,
) -> None:
    """Write an HTML report of the label set in OUT: counts, errors, time, class shares vs human labels,
    coverage vs threshold, and picture sheets (image | auto label | confidence | attention | coarse)."""
    classes = class_set_from_config(load_pipeline(config_path, ()).classes) if config_path else None
    named = dict(parse_named_file(t, "--evaluation") for t in evaluations)
    steps = ("overview", "reference labels", "confidence", "sheets", "page")
    with progress(length=len(steps), label="report") as bar:
        page = build_report(
            out,
            dest,
            evaluations=named,
            classes=classes,
            audits=dict(parse_named_file(t, "--audit") for t in audits),
            fine_source=parse_source(fine_spec, flag="--fine") if fine_spec else None,
            options=ReportOptions(worst=worst, sample=sample, seed=seed),
            on_step=lambda name: bar.update(1),
            review=review_file,
        )
    click.echo(f"report: {page}")
