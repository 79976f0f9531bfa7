"""Automatic nuclei on a second real dataset, never used to choose anything: the
nuclear-stain images and nucleus masks shipped in the ``mnfinder`` 1.2.3 wheel (MIT licence;
RPE1 and U2OS widefield at 0.645 µm/px from their MetaMorph metadata, HeLa, HFF and MCC13
cells stained with DAPI or H2B at 0.358 µm/px or uncalibrated).

    pip download mnfinder==1.2.3 --no-deps -d /tmp/mnf && unzip -q /tmp/mnf/*.whl -d /tmp/mnf
    python benchmarks/real_nuclei_mnfinder.py /tmp/mnf/mnfinder --out docs/real_nuclei_mnfinder.json

Each image is read as ``chromarate run`` reads it (its pixel size from the metadata; 0.3 µm
where the file has none, as the DSB 2018 test does: the segmentation measures the nucleus
size itself), mapped to a field by the percentile rule and segmented by
:func:`pipeline.segment.segment_nuclei` with the default settings. Objects are matched at
IoU ≥ 0.5 (:func:`pipeline.segment.match_labels`). The masks hold every nucleus the authors
drew, micronuclei and fragments included; ``f1_nuclei`` scores only the reference objects of
at least a tenth of the image's median object area (the segmentation's documented lower
bound, ``min_area_um2`` "auto"), and the found objects that match nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.io import inspect_tiff, read_planes  # noqa: E402
from pipeline.physics.observation import to_fields  # noqa: E402
from pipeline.segment import match_labels, segment_nuclei  # noqa: E402

FALLBACK_PX = 0.3


def mask_labels(path: Path) -> np.ndarray:
    """mnfinder's RGBA mask: foreground where red is set, the label in blue (and green)."""
    from skimage.io import imread

    m = imread(path)
    fg = m[..., 0] > 0
    label = m[..., 2].astype(np.int32) + 256 * (m[..., 1].astype(np.int32) - 255).clip(0)
    return np.where(fg, label, 0)


def score(image: Path, mask: Path) -> dict:
    from pipeline.errors import InputError

    try:
        info = inspect_tiff(image, warn=False)
        px, source = info.pixel_size_um, info.pixel_size_source
    except InputError:
        info = inspect_tiff(image, pixel_size_um=FALLBACK_PX, warn=False)
        px, source = FALLBACK_PX, "none (0.3 passed)"
    planes = np.asarray(read_planes(image, info))
    channel = planes[0, 0] if planes.ndim == 4 else planes[0]
    fields, _ = to_fields(np.asarray(channel, float)[None], ("heterochromatin",), "auto",
                          phi_max=0.7)
    labels, rec = segment_nuclei(fields, px)
    ref = mask_labels(mask)
    areas = np.bincount(ref.ravel())[1:]
    areas = areas[areas > 0]
    small = np.flatnonzero(np.bincount(ref.ravel()) < 0.1 * np.median(areas))
    big = np.where(np.isin(ref, small[small > 0]), 0, ref)
    m_all, m_big = match_labels(labels, ref), match_labels(labels, big)
    # found objects that overlap a small reference object only are not false positives there
    return {"image": str(image.relative_to(image.parents[3])), "pixel_size_um": px,
            "pixel_size_source": source, "shape": list(channel.shape),
            "mode": rec["mode"], "found": int(rec.get("n_nuclei", labels.max())),
            "reference": int(len(areas)), "reference_nuclei": int(len(np.unique(big)) - 1),
            "f1": round(m_all["f1"], 3), "precision": round(m_all["precision"], 3),
            "recall": round(m_all["recall"], 3), "f1_nuclei": round(m_big["f1"], 3),
            "recall_nuclei": round(m_big["recall"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="the unpacked wheel's mnfinder/ folder")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for image in sorted(args.root.glob("*/*/images/*.tif")):
        mask = image.parents[1] / "nucleus_masks" / f"{image.stem}.png"
        if not mask.exists():
            continue
        row = score(image, mask)
        rows.append(row)
        print(json.dumps(row), flush=True)
    f1 = [r["f1"] for r in rows]
    f1n = [r["f1_nuclei"] for r in rows]
    print(f"{len(rows)} images: F1 median {np.median(f1):.2f} (min {min(f1):.2f}); "
          f"nuclei only: median {np.median(f1n):.2f} (min {min(f1n):.2f})")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
