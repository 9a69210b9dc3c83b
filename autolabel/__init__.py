"""autolabel: auto-labelling for semantic segmentation with hierarchical multi-scale attention teachers."""

__version__ = "0.1.0"
