"""The review loop: rank the images a human should look at, export them to CVAT or Label Studio, and take
the corrections back as a new version of the label set.

    ranking      the signals and the score (:func:`~autolabel.review.ranking.rank_rows`)
    export       ``review export``: a package in one of :data:`~autolabel.review.names.FORMATS`
    importing    ``review import``: a tool's export -> a new label set with ``source = "human"`` rows
    cvat, label_studio, rle   the formats (CVAT's Cityscapes 1.0 and Segmentation mask 1.1; Label Studio
                 tasks and brush RLE)
    package      what the formats share (review.json, image keys, reading a tool's zip or folder)
    names        the vocabulary (formats, signals), importable without numpy

Nothing is imported here, so ``autolabel.review.names`` stays cheap for the command line.
"""
