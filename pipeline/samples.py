"""Sample sheets: which condition, replicate, ... each image belongs to.

A **sample sheet** is a CSV with a ``file`` column (the TIFF's name, or its stem) and any
other columns (``condition``, ``replicate``, ``cell_line``, ...). ``chromarate run --samples``
checks it against the input images before anything runs, keeps a copy as ``OUT/samples.csv``
and joins its columns into every summary CSV (right after ``file``) and the report. The
comparison between conditions (:mod:`pipeline.compare`) reads its columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io.atomic import atomic_write_text

__all__ = [
    "FLOAT_FORMAT",
    "SAMPLES_FILE",
    "attach_samples",
    "file_key",
    "match_samples",
    "read_sample_sheet",
    "sheet_order",
    "write_sample_sheet",
]

SAMPLES_FILE = "samples.csv"
FLOAT_FORMAT = "%.6g"

_RESERVED = {"plane", "channel_model", "channels", "calibration", "calibration_source",
             "pixel_size_um", "method", "kind", "label", "nucleus", "tile", "image", "unit",
             "n_images", "n_nuclei", "n_units"}
_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")


def _input_error(path: Any, reason: str, hint: str = "") -> ValueError:
    from .io import InputError

    return InputError(path, reason, hint)


def file_key(name: str) -> str:
    """The key that joins a sheet row to an image: the file name without folder or TIFF
    suffix, so ``images/a.ome.tif``, ``a.ome.tif`` and ``a`` all give ``a``.

    >>> file_key("images/cell_01.ome.tif"), file_key("cell_01.TIF"), file_key("cell_01")
    ('cell_01', 'cell_01', 'cell_01')
    """
    name = Path(str(name).strip().replace("\\", "/")).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _listing(names: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read and check a sample sheet (CSV; ``.tsv`` is read tab-separated).

    Every cell is kept as text (``replicate`` 01 stays ``01``). Raises
    :class:`pipeline.io.InputError` naming the sheet for: no ``file`` column, an empty
    ``file`` cell, two rows for one image, or a column whose name a summary table already
    uses (``plane``, ``method``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise _input_error(path, "no such sample sheet", "Check the path given to --samples")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        sheet = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                            skipinitialspace=True, encoding="utf-8-sig")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _input_error(path, f"cannot read the sample sheet ({exc})",
                           "Save it as a comma-separated UTF-8 CSV") from exc
    sheet.columns = [str(c).strip() for c in sheet.columns]
    if "file" not in sheet.columns:
        raise _input_error(path, f"the sample sheet has no 'file' column (columns: "
                           f"{', '.join(sheet.columns) or 'none'})",
                           "Name the column of image file names 'file'")
    sheet = sheet.apply(lambda col: col.str.strip())
    sheet = sheet[(sheet != "").any(axis=1)].reset_index(drop=True)  # blank lines
    if (sheet["file"] == "").any():
        rows = [str(i + 2) for i in np.flatnonzero(sheet["file"] == "")]
        raise _input_error(path, f"empty 'file' cell on line(s) {_listing(rows)}",
                           "Give every row an image file name")
    from .summary import IMAGE_COLUMNS, OBJECT_COLUMNS, TILE_COLUMNS

    taken = (_RESERVED | set(IMAGE_COLUMNS) | set(TILE_COLUMNS) | set(OBJECT_COLUMNS)) - {"file"}
    clash = sorted(set(sheet.columns) & taken)
    if clash:
        raise _input_error(path, f"column(s) {', '.join(clash)} clash with columns of the "
                           "summary tables", "Rename them in the sample sheet")
    if sheet.columns.duplicated().any():
        raise _input_error(path, "two columns have the same name", "Rename one of them")
    keys = sheet["file"].map(file_key)
    dup = sorted(set(keys[keys.duplicated()]))
    if dup:
        raise _input_error(path, f"more than one row for image(s) {_listing(dup)}",
                           "Keep one row per image")
    return sheet


def match_samples(sheet: pd.DataFrame, images: Iterable[str | Path], sheet_path: str | Path
                  ) -> None:
    """Refuse a sheet that does not describe exactly the images of the run.

    Raises :class:`pipeline.io.InputError` naming the images the sheet misses and the sheet
    rows that match no image (a typo in either shows up as one of each).
    """
    images = [Path(p) for p in images]
    have = {file_key(p.name): p.name for p in images}
    listed = dict(zip(sheet["file"].map(file_key), sheet["file"], strict=True))
    missing = sorted(name for key, name in have.items() if key not in listed)
    unknown = sorted(name for key, name in listed.items() if key not in have)
    problems = []
    if missing:
        problems.append(f"no row for {len(missing)} image(s): {_listing(missing)}")
    if unknown:
        problems.append(f"{len(unknown)} row(s) name no input image: {_listing(unknown)}")
    if problems:
        raise _input_error(sheet_path, "; ".join(problems),
                           "Give the sample sheet exactly one row per input image (the 'file' "
                           "column holds the file name, with or without .tif)")


def write_sample_sheet(sheet: pd.DataFrame, out_dir: str | Path) -> Path:
    """Keep the checked sheet as ``OUT/samples.csv`` (atomically), and re-join the summary
    CSVs already in ``out_dir`` when it changed (the old sheet's columns are replaced), so
    that a re-run that computes nothing still gives tables with the new sheet."""
    out_dir = Path(out_dir)
    path = out_dir / SAMPLES_FILE
    text = sheet.to_csv(index=False)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    old = ([c for c in read_sample_sheet(path).columns if c != "file"] if path.is_file()
           else [])
    atomic_write_text(path, text)
    for table in sorted(out_dir.glob("summary_*.csv")):
        df = pd.read_csv(table, dtype={c: str for c in old + list(sheet.columns)})
        df = attach_samples(df.drop(columns=[c for c in old if c in df.columns]), out_dir)
        atomic_write_text(table, df.to_csv(index=False, float_format=FLOAT_FORMAT))
    return path


def attach_samples(table: pd.DataFrame, out_dir: str | Path) -> pd.DataFrame:
    """``table`` with the columns of ``OUT/samples.csv`` joined on ``file``, right after it.

    Without a sheet (or a ``file`` column) the table is returned as it is; images the sheet
    does not list get empty cells.
    """
    path = Path(out_dir) / SAMPLES_FILE
    if "file" not in table.columns or not path.is_file():
        return table
    sheet = read_sample_sheet(path)
    extra = [c for c in sheet.columns if c != "file" and c not in table.columns]
    if not extra:
        return table
    lookup = sheet.set_index(sheet["file"].map(file_key))[extra]
    joined = lookup.reindex(table["file"].astype(str).map(file_key)).reset_index(drop=True)
    joined.index = table.index
    at = list(table.columns).index("file") + 1
    cols = list(table.columns[:at]) + extra + list(table.columns[at:])
    return pd.concat([table, joined], axis=1)[cols]


def sheet_order(out_dir: str | Path, by: str) -> list[str]:
    """The values of ``by`` in the order of ``OUT/samples.csv`` (empty without one)."""
    path = Path(out_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    sheet = read_sample_sheet(path)
    return list(dict.fromkeys(sheet[by])) if by in sheet.columns else []
