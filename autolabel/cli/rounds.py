"""`autolabel diff LABELSET_A LABELSET_B` and `autolabel rounds`: what changed between two label sets, and
self-training rounds."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from autolabel.cli.base import (
    FOLDER,
    LazyBar,
    check_out_dir,
    config_option,
    main,
    set_option,
    shipped_pipeline,
)
from autolabel.cli.demo import city_options
from autolabel.cli.evaluate import json_option, out_option
from autolabel.errors import ConfigError

DIFF_JSON, DIFF_TABLE = "diff.json", "diff.txt"  # what `diff --out DIR` writes


@main.command("diff", short_help="What changed between two label sets.")
@click.argument("labelset_a", metavar="LABELSET_A", type=FOLDER)
@click.argument("labelset_b", metavar="LABELSET_B", type=FOLDER)
@out_option(f"{DIFF_JSON} and {DIFF_TABLE} (the printed table)")
@json_option("the diff (counts, confusion matrix, most-changed images)")
@click.option("--top", default=10, show_default=True, type=click.IntRange(0), help="Most-changed images to list.")
@click.option("--matrix/--no-matrix", default=False, show_default=True, help="Print the whole confusion matrix too.")
@config_option
def diff_cmd(
    labelset_a: Path,
    labelset_b: Path,
    out: Path | None,
    json_path: str | None,
    top: int,
    matrix: bool,
    config_path: Path | None,
) -> None:
    """Compare label set LABELSET_A with LABELSET_B over the images both labelled: per class the pixels
    gained (A ignore -> B class), lost (A class -> B ignore) and flipped (class changed), the share of pixels
    that changed, the confusion matrix A -> B with ignore, and the images that changed most.

    \b
    Example (two rounds of `autolabel rounds`):
      autolabel diff runs/rounds/round-1/labels runs/rounds/round-2/labels --out runs/rounds/round-2
    """
    from autolabel.api import diff_labelsets
    from autolabel.fs import atomic_write_bytes, write_json
    from autolabel.labelset.diff import diff_table

    if out is not None:
        check_out_dir(out)
    file = Path(json_path) if json_path not in (None, "-") else None
    if file is not None and file.is_dir():
        raise ConfigError(f"--json {file}: is a folder; expected a file name")
    config = shipped_pipeline(config_path) if config_path is not None else None
    bar = LazyBar("comparing")
    try:
        diff = diff_labelsets(labelset_a, labelset_b, top=top, config=config, on_total=bar.start, on_image=bar.advance)
    finally:
        bar.close()
    table = diff_table(diff, matrix=matrix)
    if file is not None:
        write_json(file, diff)
    if out is not None:
        write_json(out / DIFF_JSON, diff)
        atomic_write_bytes(out / DIFF_TABLE, (table + "\n").encode())
    click.echo(json.dumps(diff, indent=2) if json_path == "-" else table)


@main.command("rounds", short_help="Self-training rounds: each student labels for the next.", compute=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Pipeline TOML, or a shipped one's name (demo): the teacher's schedule (train.epochs), the students' "
    "(student.epochs), the pool (generate.split) and the threshold (generate.threshold).",
)
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1), help="Rounds to run (at most).")
@click.option(
    "--out",
    type=FOLDER,
    required=True,
    help="Run folder: round-k/ per round, rounds.json and rounds.md (a rerun resumes).",
)
@set_option("student.epochs=16")
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
    help="One chain per training seed 0..N-1 in OUT/seed-S/, summarised as mean ± std [default: one chain in "
    "OUT with the config's train.seed].",
)
@click.option(
    "--jobs", default=2, show_default=True, type=click.IntRange(1), help="Chains side by side (with --seeds)."
)
@click.option(
    "--synthetic/--no-synthetic",
    default=False,
    show_default=True,
    help="Make a synthetic city in OUT/city (as the demo does) and train on it, instead of the config's data.",
)
@city_options
@click.option("--city-seed", default=0, show_default=True, help="Seed of the synthetic city.")
@click.option(
    "--report/--no-report",
    default=True,
    show_default=True,
    help="Write each round's label-set report (with the diff from the round before).",
)
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
    report: bool,
) -> None:
    """Self-training rounds in OUT: round 1 = teacher on fine labels -> generate -> student; round k+1 labels
    the pool again with round k's student as the teacher and trains a new student. Every label set names its
    teacher and its parent set; each round's report shows the diff from the round before. Prints the
    per-round table (teacher and student val mIoU, label coverage and precision, changed share).

    \b
    Example (the demo's schedule, 3 rounds, 3 training seeds):
      autolabel rounds --config demo --synthetic --rounds 3 --seeds 3 --jobs 3 --out runs/rounds
    """
    from autolabel.api import run_rounds
    from autolabel.workflows.rounds import City, markdown, parse_stop_rule

    check_out_dir(out)
    if stop_when is not None:
        parse_stop_rule(stop_when)  # a bad rule fails before any training
    command = shlex.join(["autolabel", *sys.argv[1:]])  # what the results say produced them
    city = City(train=train, val=val, extra=extra, size=size, seed=city_seed) if synthetic else False
    results = run_rounds(
        shipped_pipeline(config_path),
        out,
        rounds=rounds,
        overrides=overrides,
        seeds=range(seeds) if seeds is not None else None,
        jobs=jobs,
        stop_when=stop_when,
        synthetic=city,
        report=report,
        command=command,
        on_stage=lambda text: click.echo(f"== {text}", err=True),
    )
    click.echo(markdown(results))
    click.echo(f"results: {out / 'rounds.md'}")
