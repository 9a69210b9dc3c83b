"""`autolabel diff A B`: what changed between two label sets."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.api import diff_labelsets
from autolabel.cli.base import LazyBar, config_option, main
from autolabel.fs import atomic_write_bytes, write_json
from autolabel.labelset.diff import diff_table


@main.command("diff")
@click.argument("a", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("b", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the diff (counts, confusion matrix, top images) to this JSON file.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write diff.json and diff.txt (the printed table) into this folder.",
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(0), help="Most-changed images to list.")
@click.option("--matrix", is_flag=True, help="Print the whole confusion matrix A -> B too.")
@config_option
def diff_cmd(
    a: Path, b: Path, json_path: Path | None, out: Path | None, top: int, matrix: bool, config_path: Path | None
) -> None:
    """Compare label set A with label set B over the images both labelled: per class pixels gained, lost and
    flipped, the changed share, the confusion matrix A -> B (with ignore) and the images that changed most."""
    bar = LazyBar("comparing")
    try:
        diff = diff_labelsets(a, b, top=top, config=config_path, on_total=bar.start, on_image=bar.advance)
    finally:
        bar.close()
    table = diff_table(diff, matrix=matrix)
    if json_path is not None:
        write_json(json_path, diff)
    if out is not None:
        write_json(out / "diff.json", diff)
        atomic_write_bytes(out / "diff.txt", (table + "\n").encode())
    click.echo(table)
