"""`autolabel` commands for the report stage (registered on the main group)."""

from autolabel.cli.base import main  # noqa: F401
