"""`autolabel review export|import`: the review loop with CVAT or Label Studio (registered on the main group)."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.cli.base import (
    FOLDER,
    AutolabelGroup,
    alias_option,
    check_out_dir,
    config_option,
    load_pipeline,
    main,
    parse_names,
    resolve_alias,
    set_option,
)
from autolabel.review.names import DEFAULT_BY, DEFAULT_IMAGE_URL, FORMATS, SIGNALS


@main.group("review", cls=AutolabelGroup, short_help="Hand the worst labels to CVAT / Label Studio and back.")
def review() -> None:
    """Hand the images that most need a look to CVAT or Label Studio, and take the corrections back in.

    See docs/review.md for the loop step by step."""


@review.command("export", short_help="Package the images that most need a human for CVAT / Label Studio.")
@click.argument("labelset", metavar="LABELSET", type=FOLDER)
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
@click.option("--out", type=FOLDER, default=None, help="Folder for the package (new, empty, or an earlier one).")
@config_option
@set_option("classes.preset=cityscapes")
@click.option(
    "--boost-classes",
    default=None,
    metavar="NAMES",
    help="The rare classes of --by rare, e.g. 'pole, person' [student.boost_classes of --config].",
)
@click.option(
    "--image-url",
    default=None,
    metavar="PREFIX",
    help=f"label-studio: URL prefix of the images [default: {DEFAULT_IMAGE_URL}].",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier package in --out.")
@alias_option("--dest", "--out", "--out DIR", type=FOLDER)
@click.pass_context
def export_command(
    ctx: click.Context,
    labelset: Path,
    top: int,
    by: str,
    fmt: str,
    out: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    boost_classes: str | None,
    image_url: str | None,
    overwrite: bool,
) -> None:
    """Write the TOP images of LABELSET that most need a human look as a package for the tool (--out DIR)."""
    out = resolve_alias(ctx, "--out", "out", out)
    if out is None:
        raise click.UsageError("missing --out DIR: the folder for the package")
    from autolabel.api import review_export  # torch and friends: only when the command runs

    cfg = load_pipeline(config_path, overrides) if config_path or overrides else None
    result = review_export(
        labelset,
        check_out_dir(out),
        top=top,
        by=by,
        format=fmt,
        config=cfg,
        boost_classes=parse_names(boost_classes),
        image_url=image_url,
        overwrite=overwrite,
    )
    click.echo(
        f"{len(result.images)} of {result.candidates} images by {','.join(result.signals)} -> {result.dest} "
        f"({result.format}; selection in {result.review_file})"
    )


@review.command("import", short_help="Take a tool's corrected export back in as a new label set.")
@click.argument("labelset", metavar="LABELSET", type=FOLDER)
@click.argument("exported", metavar="EXPORTED", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=FOLDER, help="Folder of the new label set.")
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
@config_option
@set_option("classes.preset=cityscapes")
@click.option("--overwrite", is_flag=True, help="Replace another label set in --out.")
def import_command(
    labelset: Path,
    exported: Path,
    out: Path,
    review_file: Path | None,
    fmt: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    overwrite: bool,
) -> None:
    """Write LABELSET with the corrections in EXPORTED (CVAT zip/folder, Label Studio JSON) as a new label set."""
    from autolabel.api import review_import  # torch and friends: only when the command runs

    cfg = load_pipeline(config_path, overrides) if config_path or overrides else None
    result = review_import(
        labelset, exported, check_out_dir(out), review=review_file, format=fmt, config=cfg, overwrite=overwrite
    )
    if result.already_done:
        click.echo(f"{out} already holds this import (label set {result.labelset_id}); nothing to do")
        return
    changed = sum(result.pixels_changed.values())
    click.echo(
        f"{len(result.corrected)} images corrected ({changed} pixels changed), {result.carried} carried over -> "
        f"{out} (label set {result.labelset_id}, parent {result.parent_labelset_id})"
    )
