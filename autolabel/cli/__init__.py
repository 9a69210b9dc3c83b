"""Command-line interface: ``autolabel <command>``; each stage's commands live in their own module."""

# Importing the stage modules registers their commands on `main`.
from autolabel.cli import data, demo, evaluate, generate, models, report, review, rounds, train  # noqa: F401
from autolabel.cli.base import main

__all__ = ["main"]
