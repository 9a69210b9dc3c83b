"""`autolabel diff A B` and `autolabel rounds`: what changed between two label sets, and self-training rounds."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from autolabel.api import diff_labelsets, run_rounds
from autolabel.cli.base import LazyBar, config_option, main, set_option
from autolabel.cli.demo import city_options
from autolabel.fs import atomic_write_bytes, write_json
from autolabel.labelset.diff import diff_table
from autolabel.workflows.rounds import City, markdown, parse_stop_rule


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


@main.command("rounds")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Pipeline TOML: the teacher's (train.epochs) and the students' (student.epochs) schedule, the pool.",
)
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1), help="Rounds to run (at most).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder: round-k/ per round, rounds.json and rounds.md (a rerun resumes).",
)
@set_option
@click.option(
    "--stop-when",
    default=None,
    metavar="RULE",
    help="Stop after the first round where RULE fires: changed<X (share of label pixels changed from the "
    "previous round, e.g. changed<0.02) or miou-plateau[<D] (student val mIoU gain over the previous round's).",
)
@click.option(
    "--seeds",
    default=None,
    type=click.IntRange(1),
    help="Run one chain per training seed 0..N-1 in OUT/seed-S/ and summarise (mean ± std) [default: one "
    "chain in OUT with train.seed].",
)
@click.option(
    "--jobs", default=2, show_default=True, type=click.IntRange(1), help="Chains side by side (with --seeds)."
)
@click.option("--synthetic", is_flag=True, help="Make a synthetic city in OUT/city and train on it (as the demo).")
@city_options
@click.option("--city-seed", default=0, show_default=True, help="Seed of the synthetic city.")
@click.option("--no-report", is_flag=True, help="Skip each round's HTML report.")
def rounds_cmd(
    config_path: Path,
    rounds: int,
    out: Path,
    overrides: tuple[str, ...],
    stop_when: str | None,
    seeds: int | None,
    jobs: int,
    synthetic: bool,
    train: int,
    val: int,
    extra: int,
    size: tuple[int, int],
    city_seed: int,
    no_report: bool,
) -> None:
    """Self-training rounds: round 1 = teacher on fine labels -> generate -> student; round k+1 labels the pool
    again with round k's student as the teacher and trains a new student. Prints the per-round table."""
    if stop_when is not None:
        parse_stop_rule(stop_when)  # a bad rule fails before any training
    command = shlex.join(["autolabel", *sys.argv[1:]])  # what the results say produced them
    city = City(train=train, val=val, extra=extra, size=size, seed=city_seed) if synthetic else False
    results = run_rounds(
        config_path,
        out,
        rounds=rounds,
        overrides=overrides,
        seeds=range(seeds) if seeds is not None else None,
        jobs=jobs,
        stop_when=stop_when,
        synthetic=city,
        report=not no_report,
        command=command,
        on_stage=lambda text: click.echo(f"== {text}", err=True),
    )
    click.echo(markdown(results))
    click.echo(f"results: {out / 'rounds.md'}")
