"""`autolabel demo`: the whole pipeline on a synthetic city (what `make demo` runs)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from autolabel.cli.base import FOLDER, check_out_dir, main, set_option, shipped_pipeline
from autolabel.cli.data import parse_size_option


def city_options(command):
    """The synthetic city's size options, shared by `demo` and `reproduce`."""
    options = [
        click.option("--train", default=200, show_default=True, type=click.IntRange(1), help="Fine training images."),
        click.option("--val", default=50, show_default=True, type=click.IntRange(1), help="Validation images."),
        click.option(
            "--extra",
            default=400,
            show_default=True,
            type=click.IntRange(1),
            help="Images to auto-label (train_extra).",
        ),
        click.option(
            "--size",
            default="512x256",
            show_default=True,
            callback=parse_size_option,
            metavar="WxH",
            help="Image size of the synthetic city.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command("demo", short_help="The whole pipeline on a synthetic city (CPU).", compute=True)
@click.option(
    "--out",
    type=FOLDER,
    default=Path("runs/demo"),
    show_default=True,
    help="Folder for all the demo makes (a rerun finishes or skips stages).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline TOML of the demo [default: the shipped demo.toml, wherever autolabel is installed].",
)
@set_option("train.epochs=4")
@city_options
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic city.")
def demo(
    out: Path,
    config_path: Path,
    overrides: tuple[str, ...],
    train: int,
    val: int,
    extra: int,
    size: tuple[int, int],
    seed: int,
) -> None:
    """The whole pipeline on a synthetic city, in OUT: synth -> teacher -> generate -> two students (fine + auto
    labels, fine + human coarse labels) -> evaluate -> audit -> report. Works from any folder.

    \b
    Example (a few minutes' trial):
      autolabel demo --out /tmp/demo --train 20 --val 5 --extra 20 --set train.epochs=2 --set student.epochs=2
    """
    from autolabel.workflows.demo import DemoSettings, results_table, run_demo

    check_out_dir(out)
    config = shipped_pipeline(config_path if config_path is not None else "demo")
    settings = DemoSettings(
        out=out, config=config, overrides=overrides, train=train, val=val, extra=extra, size=size, seed=seed
    )
    result = run_demo(settings, on_stage=lambda name: click.echo(f"== {name}", err=True))
    click.echo(results_table(result))
    click.echo(f"report: {result.report}")


@main.command("reproduce", short_help="The paper's tables in miniature, over seeds.", compute=True)
@click.option(
    "--out",
    type=FOLDER,
    default=Path("results"),
    show_default=True,
    help="Folder for reproduce.json and reproduce.md.",
)
@click.option(
    "--work",
    type=FOLDER,
    default=Path("runs/reproduce"),
    show_default=True,
    help="Folder for the city, runs and label sets (a rerun resumes).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Base pipeline TOML [default: the shipped reproduce.toml].",
)
@set_option("train.epochs=10")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1), help="Training seeds 0..N-1.")
@click.option(
    "--jobs", default=2, show_default=True, type=click.IntRange(1), help="Trainings side by side (one thread each)."
)
@city_options
def reproduce(
    out: Path,
    work: Path,
    config_path: Path,
    overrides: tuple[str, ...],
    seeds: int,
    jobs: int,
    train: int,
    val: int,
    extra: int,
    size: tuple[int, int],
) -> None:
    """The paper's Table 3, failure modes and Table 4 in miniature, over several seeds -> OUT/reproduce.md."""
    from autolabel.workflows.reproduce import ReproduceSettings, markdown, run_reproduce

    check_out_dir(out)
    check_out_dir(work, "--work")
    config_path = shipped_pipeline(config_path if config_path is not None else "reproduce")

    command = shlex.join(["autolabel", *sys.argv[1:]])  # what the results say produced them
    settings = ReproduceSettings(
        work=work,
        results=out,
        config=config_path,
        seeds=tuple(range(seeds)),
        overrides=overrides,
        train=train,
        val=val,
        extra=extra,
        size=size,
        jobs=jobs,
        command=command,
    )
    results = run_reproduce(settings, on_stage=lambda text: click.echo(f"== {text}", err=True))
    click.echo(markdown(results))
    click.echo(f"results: {out / 'reproduce.md'}")
