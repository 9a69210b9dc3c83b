"""The review loop: rank the images a human should look at, export them to CVAT or Label Studio, and take
the corrections back as a new version of the label set.

    ranking      the signals and the score (:func:`~autolabel.review.ranking.rank_rows`)
    export       ``review export``: a package in one of :data:`~autolabel.review.package.FORMATS`
    importing    ``review import``: a tool's export -> a new label set with ``source = "human"`` rows
    cvat, label_studio, rle   the formats (CVAT's Cityscapes 1.0 and Segmentation mask 1.1; Label Studio
                 tasks and brush RLE)
"""

from autolabel.review.export import ExportResult, export_review
from autolabel.review.importing import ImportResult, import_review
from autolabel.review.package import FORMATS, REVIEW_FILE, read_package
from autolabel.review.ranking import DEFAULT_BY, SIGNALS, rank_rows

__all__ = [
    "DEFAULT_BY",
    "FORMATS",
    "REVIEW_FILE",
    "SIGNALS",
    "ExportResult",
    "ImportResult",
    "export_review",
    "import_review",
    "rank_rows",
    "read_package",
]
