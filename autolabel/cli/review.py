"""`autolabel review export|import`: the review loop with CVAT or Label Studio (registered on the main group)."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.cli.base import main
from autolabel.review.names import DEFAULT_BY, DEFAULT_IMAGE_URL, FORMATS, SIGNALS


@main.group("review")
def review() -> None:
    """Hand the images that most need a look to CVAT or Label Studio, and take the corrections back in.

    See docs/review.md for the loop step by step."""


@review.command("export")
@click.argument("labelset", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--top", default=20, show_default=True, type=click.IntRange(1), help="Images to select.")
@click.option(
    "--by",
    default=",".join(DEFAULT_BY),
    show_default=True,
    metavar="SIGNAL[,SIGNAL...]",
    help=f"Ranking signals, averaged as percentiles: {', '.join(f'{k} ({v})' for k, v in SIGNALS.items())}.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=FORMATS[0],
    show_default=True,
    help="cvat-cityscapes: CVAT 'Cityscapes 1.0'; cvat-mask: CVAT 'Segmentation mask 1.1'; label-studio: tasks.",
)
@click.option("--dest", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the package.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline TOML: class colours, and student.boost_classes for --by rare.",
)
@click.option("--boost-class", "boost_classes", multiple=True, metavar="NAME", help="A rare class (repeatable).")
@click.option(
    "--image-url",
    default=None,
    metavar="PREFIX",
    help=f"label-studio: URL prefix of the images [default: {DEFAULT_IMAGE_URL}].",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier package in --dest.")
def export_command(
    labelset: Path,
    top: int,
    by: str,
    fmt: str,
    dest: Path,
    config_path: Path | None,
    boost_classes: tuple[str, ...],
    image_url: str | None,
    overwrite: bool,
) -> None:
    """Write the TOP images of LABELSET that most need a human look as a package for the tool."""
    from autolabel.api import review_export  # torch and friends: only when the command runs

    result = review_export(
        labelset,
        dest,
        top=top,
        by=by,
        format=fmt,
        config=config_path,
        boost_classes=boost_classes or None,
        image_url=image_url,
        overwrite=overwrite,
    )
    click.echo(
        f"{len(result.images)} of {result.candidates} images by {','.join(result.signals)} -> {result.dest} "
        f"({result.format}; selection in {result.review_file})"
    )


@review.command("import")
@click.argument("labelset", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("exported", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder of the new label set."
)
@click.option(
    "--review",
    "review_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The package's review.json [default: one beside or inside EXPORTED].",
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default=None, help="The export's format [default: detect]."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline TOML whose class list to use.",
)
@click.option("--overwrite", is_flag=True, help="Replace another label set in --out.")
def import_command(
    labelset: Path,
    exported: Path,
    out: Path,
    review_file: Path | None,
    fmt: str | None,
    config_path: Path | None,
    overwrite: bool,
) -> None:
    """Write LABELSET with the corrections in EXPORTED (CVAT zip/folder, Label Studio JSON) as a new label set."""
    from autolabel.api import review_import  # torch and friends: only when the command runs

    result = review_import(
        labelset, exported, out, review=review_file, format=fmt, config=config_path, overwrite=overwrite
    )
    if result.already_done:
        click.echo(f"{out} already holds this import (label set {result.labelset_id}); nothing to do")
        return
    changed = sum(result.pixels_changed.values())
    click.echo(
        f"{len(result.corrected)} images corrected ({changed} pixels changed), {result.carried} carried over -> "
        f"{out} (label set {result.labelset_id}, parent {result.parent_labelset_id})"
    )
