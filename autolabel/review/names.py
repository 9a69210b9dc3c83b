"""The review loop's vocabulary (no imports: the command line's option lists come from here, and starting
``autolabel`` must not load numpy or torch for them)."""

FORMATS = ("cvat-cityscapes", "cvat-mask", "label-studio")
SIGNALS = {
    "confidence": "1 - mean confidence",
    "ignored": "ignored-pixel share",
    "rare": "rare (boost) class share",
    "disagreement": "scale disagreement",
    "flip": "flip disagreement",
}
DEFAULT_BY = ("confidence", "disagreement")
DEFAULT_IMAGE_URL = "/data/local-files/?d=images/"  # Label Studio's local-files URL, document root = the package
