"""`autolabel` commands for the train stage (registered on the main group)."""

from autolabel.cli.base import main  # noqa: F401
