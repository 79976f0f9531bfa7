"""``OUT/report.html``: one self-contained page (figures embedded as PNG) for collaborators.

It holds, per image and plane: the raw channels, the λ map (colour bar, scale bar), its std,
the nuclei outlines over the identifiable mask, the bandwidth evidence, the calibration and
the quality checks; per run: λ distributions per image and per nucleus, the failed images
with their reasons, and, when the run had a sample sheet with a ``condition`` column (or
``chromarate compare`` was run), the comparison between conditions. See docs/report.md.

The flow writes it at the end of a run (:func:`try_write_report`: a report that cannot be
drawn never fails the run); ``chromarate report OUT`` rebuilds it from the results alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

REPORT_FILE = "report.html"

__all__ = [
    "LAMBDA_TITLE",
    "REPORT_FILE",
    "ReportUnavailable",
    "report_is_current",
    "try_write_report",
    "write_comparison_outputs",
    "write_report",
]

log = logging.getLogger(__name__)
_LAZY = {"write_report": "build", "write_comparison_outputs": "build", "LAMBDA_TITLE": "figures",
         "ReportUnavailable": "figures"}


def __getattr__(name: str) -> Any:
    """The drawing modules (pandas, matplotlib) load on first use: an up-to-date re-run only
    checks :func:`report_is_current` and stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def report_is_current(out_dir: str | Path) -> bool:
    """True when ``report.html`` is newer than every summary and comparison CSV and the sample
    sheet. The flow rewrites the summaries whenever a store, a setting or a failure changed,
    so an up-to-date re-run leaves the report alone (and stays fast)."""
    out_dir = Path(out_dir)
    report = out_dir / REPORT_FILE
    if not report.is_file():
        return False
    inputs = [out_dir / "samples.csv", *out_dir.glob("summary_*.csv"),
              *out_dir.glob("compare_*.csv")]
    newest = max((p.stat().st_mtime_ns for p in inputs if p.is_file()), default=0)
    return report.stat().st_mtime_ns >= newest


def try_write_report(out_dir: str | Path, *, force: bool = False) -> Path | None:
    """:func:`write_report` at the end of a run: skipped when the report is current (unless
    ``force``), and a failure is logged as a warning instead of raised."""
    try:
        if not force and report_is_current(out_dir):
            return Path(out_dir) / REPORT_FILE
        from .build import write_report

        return write_report(out_dir)
    except Exception as exc:  # the results are written; a figure must not fail the run
        log.warning("report.html was not written (%s); the results are complete. Run "
                    "'chromarate report %s' to try again", exc, out_dir)
        return None
