"""Command-line interface: ``autolabel <command>``; each stage's commands live in their own module."""

from autolabel.cli.base import main

# Importing the stage modules registers their commands on `main`.
from autolabel.cli import data, models, generate, train, evaluate, report, demo  # noqa: E402,F401,I001

__all__ = ["main"]
