"""Stress cases as files: uint16 TIFFs a user would open, truth kept in a separate folder.

:func:`write_stress_folder` writes every case of a seed set so that the whole product path
(``chromarate run``) can be measured on it: ``<out>/images/<case>.tif`` (OME or ImageJ pixel
size, channel names) and ``<out>/truth/<case>.npz`` plus ``manifest.json``. The manifest
gives each case's ``--calibration`` argument, built from ``calibration_given`` (with the case's
deliberate error), and the command to run it. Files are written atomically.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from pipeline.simulate.stress import StressSpec
>>> spec = StressSpec(name="tiny", kind="step", channels=2, pixel_size_um=0.03, size_px=64,
...                   lam_scale_um=0.5, calibration_error=(0.1, -0.1))
>>> out = Path(tempfile.mkdtemp())
>>> manifest = write_stress_folder(out, seeds=(3,), specs=(spec,))
>>> [c["name"] for c in manifest["cases"]], sorted(p.name for p in (out / "images").iterdir())
(['tiny_s3'], ['tiny_s3.tif'])
>>> truth = load_stress_truth(out / "truth" / "tiny_s3.npz")
>>> truth["lam"].shape, truth["calibration_given"][0].scale > truth["calibration"][0].scale
((64, 64), True)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from pipeline.config import Calibration
from pipeline.io.atomic import atomic_file, atomic_write_text

from .stress import STRESS_SPECS, StressCase, StressSpec, make_stress_case

__all__ = ["calibration_arg", "write_stress_case", "load_stress_truth", "write_stress_folder"]

log = logging.getLogger(__name__)


def calibration_arg(calibration: Sequence[Calibration]) -> str:
    """The ``--calibration`` value for ``calibration``: ``OFFSET:SCALE[,OFFSET:SCALE]``.

    >>> calibration_arg([Calibration(offset=100, scale=0.001)])
    '100.0:0.001'
    """
    return ",".join(f"{c.offset!r}:{c.scale!r}" for c in calibration)


def write_stress_case(case: StressCase, image_path: str | os.PathLike, truth_path: str | os.PathLike,
                      *, metadata: Literal["ome", "imagej"] = "ome") -> tuple[Path, Path]:
    """Write ``case.image`` as a uint16 TIFF (2-D for one channel) and its truth as ``.npz``.

    Truth keys: ``lam, phi_h, phi_w`` (float64), ``foreground`` (bool), ``pixel_size_um``,
    ``calibration`` and ``calibration_given`` (``(C, 2)``: offset, scale), ``channel_names``,
    ``params`` (JSON), ``name``, ``image_file``. Read it with :func:`load_stress_truth`.
    """
    image_path, truth_path = Path(image_path), Path(truth_path)
    px = float(case.pixel_size_um)
    two_d = case.image.shape[0] == 1
    data, axes = (case.image[0], "YX") if two_d else (case.image, "CYX")
    with atomic_file(image_path) as tmp:
        if metadata == "ome":
            tifffile.imwrite(tmp, data, ome=True, metadata={
                "axes": axes, "PhysicalSizeX": px, "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": px, "PhysicalSizeYUnit": "µm",
                "Channel": {"Name": list(case.channel_names)}})
        elif metadata == "imagej":
            tifffile.imwrite(tmp, data, imagej=True, resolution=(1.0 / px, 1.0 / px),
                             metadata={"unit": "um", "axes": axes,
                                       "Labels": list(case.channel_names)})
        else:
            raise ValueError(f"metadata must be 'ome' or 'imagej', got {metadata!r}")
    with atomic_file(truth_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, lam=case.lam, phi_h=case.phi_h, phi_w=case.phi_w, foreground=case.foreground,
            pixel_size_um=np.float64(px),
            calibration=np.array([[c.offset, c.scale] for c in case.calibration]),
            calibration_given=np.array([[c.offset, c.scale] for c in case.calibration_given]),
            channel_names=np.array(case.channel_names), params=np.array(json.dumps(case.params)),
            name=np.array(case.name), image_file=np.array(image_path.name))
    log.info("wrote %s and %s", image_path, truth_path)
    return image_path, truth_path


def load_stress_truth(path: str | os.PathLike) -> dict[str, Any]:
    """Read a truth file of :func:`write_stress_case` (calibrations as ``Calibration``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a stress-case truth file ({exc})") from exc
    missing = {"lam", "calibration", "calibration_given", "params"} - set(d)
    if missing:
        raise ValueError(f"{path}: not a stress-case truth file (missing {sorted(missing)})")
    for key in ("calibration", "calibration_given"):
        d[key] = tuple(Calibration(offset=float(o), scale=float(s)) for o, s in d[key])
    d["params"] = json.loads(str(d["params"]))
    d["channel_names"] = tuple(str(c) for c in d["channel_names"])
    for key in ("name", "image_file"):
        d[key] = str(d[key])
    d["pixel_size_um"] = float(d["pixel_size_um"])
    return d


def write_stress_folder(out: str | os.PathLike, *, seeds: Sequence[int],
                        specs: Sequence[StressSpec] = STRESS_SPECS,
                        metadata: Literal["ome", "imagej"] = "ome") -> dict[str, Any]:
    """Write ``specs`` × ``seeds`` under ``out`` (``images/``, ``truth/``) and return the
    manifest (also written as ``truth/manifest.json``)."""
    out = Path(out)
    cases = []
    for seed in seeds:
        for spec in specs:
            case = make_stress_case(spec, seed)
            img, tru = write_stress_case(case, out / "images" / f"{case.name}.tif",
                                         out / "truth" / f"{case.name}.npz", metadata=metadata)
            cal = calibration_arg(case.calibration_given)
            cases.append({
                "name": case.name, "spec": spec.name, "seed": int(seed),
                "image": f"images/{img.name}", "truth": f"truth/{tru.name}",
                "channel_names": list(case.channel_names), "calibration_arg": cal,
                "command": f"chromarate run images/{img.name} --out results/{case.name} "
                           f"--calibration {cal}"})
    manifest = {"seeds": [int(s) for s in seeds], "metadata": metadata, "cases": cases}
    atomic_write_text(out / "truth" / "manifest.json", json.dumps(manifest, indent=1))
    return manifest
