"""Audit reports: ``results.jsonl`` (the record), ``report.json``, ``report.md``, ``report.html``.

The schema of every file is documented in ``SCHEMA.md`` beside this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .records import RESULTS, SCHEMA_VERSION, ResultsWriter, case_record, environment, read_results
from .summary import build_report

__all__ = ["RESULTS", "SCHEMA_VERSION", "ResultsWriter", "build_report", "case_record", "environment",
           "read_results", "render_reports", "report_texts", "write_reports"]


def report_texts(directory: Path, records: Sequence[Mapping[str, Any]],
                 plots: Mapping | None = None) -> tuple[dict[str, Any], dict[Path, str]]:
    """The report document and the texts of report.json, report.md and report.html for ``records``
    (``plots``: groups' plots already drawn, :func:`theorycheck.report.html.group_plots`)."""
    import json

    from .html import render_html
    from .markdown import render_markdown

    directory = Path(directory)
    report = build_report(records)
    return report, {directory / "report.json": json.dumps(report, indent=1, allow_nan=False) + "\n",
                    directory / "report.md": render_markdown(report),
                    directory / "report.html": render_html(report, records, plots)}


def write_reports(directory: Path, records: Sequence[Mapping[str, Any]],
                  plots: Mapping | None = None) -> dict[str, Any]:
    """Write report.json, report.md and report.html for ``records`` (all three or none: an unwritable
    directory raises ``InvalidArgument`` and leaves the old files); return the report document."""
    from .records import write_texts_atomic

    report, texts = report_texts(directory, records, plots)
    write_texts_atomic(texts)
    return report


def render_reports(directory: Path) -> dict[str, Any]:
    """Re-render the reports of a directory from its ``results.jsonl``."""
    return write_reports(Path(directory), read_results(Path(directory) / RESULTS))
