"""The HTML report of a label set (``autolabel report OUT``)."""

from autolabel.report.build import ReportOptions, build_report

__all__ = ["ReportOptions", "build_report"]
