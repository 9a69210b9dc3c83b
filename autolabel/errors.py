"""One error hierarchy for everything a user can cause.

The CLI prints these without a traceback and exits with :data:`EXIT_USER_ERROR`.
"""

EXIT_OK = 0
EXIT_CRASH = 1  # an uncaught exception (a bug): Python's own exit code
EXIT_USER_ERROR = 2  # bad config, path, checkpoint, ...; also click's usage errors
EXIT_FINISHED_WITH_ERRORS = 3  # a long job finished but some items failed (see the manifest)


class AutolabelError(Exception):
    """Base class of every error a user can cause; the message names the file/key and what was expected."""


class ConfigError(AutolabelError):
    """A config file, key or value is wrong."""


class DataError(AutolabelError):
    """An input file (image, label, list, dataset tree) is missing, unreadable or malformed."""


class CheckpointError(AutolabelError):
    """A checkpoint is missing, truncated, unsafe, or does not fit the model/classes."""


class LabelSetError(AutolabelError):
    """An auto-label set on disk is inconsistent, or conflicts with the requested run."""


class OutputError(AutolabelError):
    """Writing output failed (disk full, permissions, a path outside the output directory)."""


class ReviewError(AutolabelError):
    """A review package or a tool's corrected export does not fit the label set (image, size, class, colour)."""
