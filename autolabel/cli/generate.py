"""`autolabel` commands for the generate stage (registered on the main group)."""

from autolabel.cli.base import main  # noqa: F401
