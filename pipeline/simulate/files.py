"""Writing synthetic cases: uint16 TIFF images with pixel size, ground truth as ``.npz``.

Truths go to a folder *outside* the image folder, so that running the pipeline on the image
folder never sees them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from pipeline import __version__
from pipeline.config import Calibration

from .case import SyntheticCase, case_name, simulate_case
from .fields import LAMBDA_KINDS

__all__ = ["write_case", "load_truth", "simulate_folder", "default_truth_dir"]

log = logging.getLogger(__name__)

TRUTH_FORMAT = 1


def write_case(
    case: SyntheticCase,
    image_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    *,
    metadata: Literal["ome", "imagej"] = "ome",
    truth_dtype: Literal["float64", "float32"] = "float64",
) -> tuple[Path, Path]:
    """Write ``case.image`` as a uint16 TIFF and its ground truth as a compressed ``.npz``.

    Parameters
    ----------
    case : SyntheticCase
    image_path, truth_path : path
        Destinations (parent folders are created).
    metadata : {"ome", "imagej"}
        Pixel size as OME ``PhysicalSizeX/Y`` in µm with channel names, or as ImageJ
        resolution with unit ``um`` (channel names as ``Labels``). One-channel images are
        written 2-D (``YX``), two-channel ones ``CYX``.
    truth_dtype : {"float64", "float32"}
        Precision of the truth maps. float64 keeps the steady state's residual < 1e-6;
        float32 halves the size, but its rounding, amplified by ∇⁴, gives recomputed
        residuals ~1e-3–1e-2 (measured at 256², 0.02 µm).

    Truth keys: ``lam, phi_h, phi_w, phi_d`` (Y, X); ``pixel_size_um``;
    ``calibration_offset, calibration_scale, channel_names`` (per channel); ``parameters``
    and ``solver_info`` (JSON strings); ``name``, ``image_file``, ``format``.
    Read it back with :func:`load_truth`.

    Examples
    --------
    >>> import tempfile
    >>> from pipeline.simulate import simulate_case
    >>> case = simulate_case(kind="step", channels=2, noise=0.02, shape=(32, 32))
    >>> d = Path(tempfile.mkdtemp())
    >>> img, tru = write_case(case, d / "img" / "a.tif", d / "truth" / "a.npz")
    >>> tifffile.imread(img).shape
    (2, 32, 32)
    >>> load_truth(tru)["calibration"][0] == case.calibration[0]
    True
    """
    image_path, truth_path = Path(image_path), Path(truth_path)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    px = float(case.pixel_size_um)
    two_d = case.image.shape[0] == 1
    data = case.image[0] if two_d else case.image
    axes = "YX" if two_d else "CYX"
    if metadata == "ome":
        tifffile.imwrite(
            image_path,
            data,
            ome=True,
            metadata={
                "axes": axes,
                "PhysicalSizeX": px,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": px,
                "PhysicalSizeYUnit": "µm",
                "Channel": {"Name": list(case.channel_names)},
            },
        )
    elif metadata == "imagej":
        tifffile.imwrite(
            image_path,
            data,
            imagej=True,
            resolution=(1.0 / px, 1.0 / px),
            metadata={"unit": "um", "axes": axes, "Labels": list(case.channel_names)},
        )
    else:
        raise ValueError(f"metadata must be 'ome' or 'imagej', got {metadata!r}")
    if truth_dtype not in ("float64", "float32"):
        raise ValueError(f"truth_dtype must be 'float64' or 'float32', got {truth_dtype!r}")
    np.savez_compressed(
        truth_path,
        lam=case.lam.astype(truth_dtype),
        phi_h=case.phi_h.astype(truth_dtype),
        phi_w=case.phi_w.astype(truth_dtype),
        phi_d=case.phi_d.astype(truth_dtype),
        pixel_size_um=np.float64(px),
        calibration_offset=np.array([c.offset for c in case.calibration]),
        calibration_scale=np.array([c.scale for c in case.calibration]),
        channel_names=np.array(case.channel_names),
        parameters=np.array(json.dumps(case.parameters)),
        solver_info=np.array(json.dumps(case.solver_info)),
        name=np.array(case.name),
        image_file=np.array(image_path.name),
        format=np.int64(TRUTH_FORMAT),
    )
    log.info("wrote %s and %s", image_path, truth_path)
    return image_path, truth_path


def load_truth(path: str | os.PathLike) -> dict[str, Any]:
    """Read a truth ``.npz`` written by :func:`write_case`.

    Returns a dict with the arrays ``lam, phi_h, phi_w, phi_d``, ``pixel_size_um`` (float),
    ``calibration`` (tuple of :class:`~pipeline.config.Calibration`), ``channel_names``
    (tuple), ``parameters`` and ``solver_info`` (dicts), ``name`` and ``image_file`` (str).
    The example of :func:`write_case` writes a case and reads its truth back.
    """
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in ("lam", "phi_h", "phi_w", "phi_d")}
        out["pixel_size_um"] = float(z["pixel_size_um"])
        out["calibration"] = tuple(
            Calibration(offset=float(o), scale=float(s))
            for o, s in zip(z["calibration_offset"], z["calibration_scale"], strict=True)
        )
        out["channel_names"] = tuple(str(n) for n in z["channel_names"])
        out["parameters"] = json.loads(str(z["parameters"]))
        out["solver_info"] = json.loads(str(z["solver_info"]))
        out["name"] = str(z["name"])
        out["image_file"] = str(z["image_file"])
    return out


def default_truth_dir(outdir: str | os.PathLike) -> Path:
    """The sibling folder ``<outdir>_truth``.

    >>> default_truth_dir("data/images").as_posix()
    'data/images_truth'
    """
    outdir = Path(outdir)
    return outdir.with_name(outdir.name + "_truth")


def _is_within(inner: Path, outer: Path) -> bool:
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def simulate_folder(
    outdir: str | os.PathLike,
    *,
    truth_dir: str | os.PathLike | None = None,
    kinds: Iterable[str] = LAMBDA_KINDS,
    channels: Iterable[int] = (1, 2),
    cases: Sequence[tuple[str, int]] | None = None,
    noise: float = 0.02,
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.02,
    seed: int = 0,
    metadata: Literal["ome", "imagej"] = "ome",
    truth_dtype: Literal["float64", "float32"] = "float64",
    description: str | None = None,
    **case_options: Any,
) -> list[Path]:
    """Simulate a folder of images, with the truths, a manifest and a README elsewhere.

    Writes ``outdir/<kind>_<C>ch_s<seed>.tif`` for every (kind, channels) pair (all of
    ``kinds × channels``, or exactly ``cases``), and ``truth_dir/<same name>.npz`` plus
    ``truth_dir/manifest.json`` and ``truth_dir/README.md``. ``truth_dir`` defaults to the
    sibling ``<outdir>_truth`` and may not lie inside ``outdir``.

    Parameters
    ----------
    outdir : path
        Image folder.
    truth_dir : path, optional
        Truth folder (outside ``outdir``).
    kinds, channels : iterables
        λ kinds and channel counts to combine; ignored when ``cases`` is given.
    cases : sequence of (kind, channels), optional
        Exactly these cases.
    noise, shape, pixel_size_um, seed
        As in :func:`~pipeline.simulate.case.simulate_case` (one seed for all cases, so
        one kind has the same λ for one and two channels).
    metadata, truth_dtype
        As in :func:`write_case`.
    description : str, optional
        A paragraph for the README (e.g. the command that generated the folder).
    **case_options
        Passed to :func:`~pipeline.simulate.case.simulate_case`.

    Returns
    -------
    list of Path
        The image files, in order.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> paths = simulate_folder(d / "images", cases=[("smooth", 1)], shape=(32, 32))
    >>> [p.name for p in paths], (d / "images_truth" / "manifest.json").exists()
    (['smooth_1ch_s0.tif'], True)
    """
    outdir = Path(outdir)
    truth_dir = default_truth_dir(outdir) if truth_dir is None else Path(truth_dir)
    if _is_within(truth_dir, outdir):
        raise ValueError(
            f"truth_dir {truth_dir} lies inside the image folder {outdir}; a pipeline run on "
            "the image folder would see the truth files. Choose a folder outside it."
        )
    pairs = list(cases) if cases is not None else [(k, c) for k in kinds for c in channels]
    outdir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    entries: list[dict[str, Any]] = []
    for kind, n_channels in pairs:
        case = simulate_case(
            kind=kind,  # type: ignore[arg-type]
            channels=n_channels,  # type: ignore[arg-type]
            noise=noise,
            shape=shape,
            pixel_size_um=pixel_size_um,
            seed=seed,
            **case_options,
        )
        name = case_name(kind, n_channels, seed)
        image_path, truth_path = write_case(
            case,
            outdir / f"{name}.tif",
            truth_dir / f"{name}.npz",
            metadata=metadata,
            truth_dtype=truth_dtype,
        )
        paths.append(image_path)
        entries.append(_manifest_entry(case, image_path, truth_path, truth_dir))
    manifest = {
        "generator": "pipeline.simulate.simulate_folder",
        "chromarate_version": __version__,
        "image_dir": os.path.relpath(outdir, truth_dir),
        "call": {
            "noise": noise,
            "shape": list(shape),
            "pixel_size_um": pixel_size_um,
            "seed": seed,
            "metadata": metadata,
            "truth_dtype": truth_dtype,
            "cases": [[k, c] for k, c in pairs],
            "case_options": case_options,
        },
        "cases": entries,
    }
    (truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (truth_dir / "README.md").write_text(_readme(manifest, description))
    return paths


def _manifest_entry(
    case: SyntheticCase, image_path: Path, truth_path: Path, truth_dir: Path
) -> dict[str, Any]:
    info = {k: v for k, v in case.solver_info.items() if k != "residual_history"}
    return {
        "name": case.name,
        "image": os.path.relpath(image_path, truth_dir),
        "truth": os.path.relpath(truth_path, truth_dir),
        "channel_names": list(case.channel_names),
        "calibration": [{"offset": c.offset, "scale": c.scale} for c in case.calibration],
        "pixel_size_um": case.pixel_size_um,
        "lambda_range": [float(case.lam.min()), float(case.lam.max())],
        "parameters": case.parameters,
        "solver": info,
    }


def _readme(manifest: dict[str, Any], description: str | None) -> str:
    call = manifest["call"]
    lines = [
        "# Synthetic ground truth (chromarate)",
        "",
        "Generated by `pipeline.simulate.simulate_folder` "
        f"(chromarate {manifest['chromarate_version']}).",
        "",
    ]
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"Images: `{manifest['image_dir']}` (relative to this folder). Shape {call['shape']}, "
        f"pixel size {call['pixel_size_um']} µm ({call['metadata']} metadata), seed "
        f"{call['seed']}, field noise σ = {call['noise']} at mid intensity (φ_max/2).",
        "",
        "Each image is a steady state of the chromatin model (docs/science.md §1) for a known "
        "rate ratio λ(x), solved by semi-implicit spectral stepping on a periodic grid to a "
        "spectral residual below the tolerance; then blurred by a Gaussian PSF, with Poisson "
        "photons, Gaussian read noise and a camera offset, as uint16. Single-channel images "
        "show φ_h with φ_w ≡ 1 − φ_max; two-channel ones show c = 1 − φ_w (chromatin) and φ_h "
        "(heterochromatin).",
        "",
        "Truth files (`<name>.npz`, `pipeline.simulate.load_truth`): `lam`, `phi_h`, `phi_w`, "
        "`phi_d`, `pixel_size_um`, `calibration_offset`/`calibration_scale` per channel "
        "(field = (I − offset) × scale), `channel_names`, `parameters` and `solver_info` "
        f"(JSON), stored as {call['truth_dtype']}.",
        "",
        "| name | channels | λ range | offset | scale | solver steps | max residual |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in manifest["cases"]:
        cal = e["calibration"][0]
        lo, hi = e["lambda_range"]
        lines.append(
            f"| {e['name']} | {', '.join(e['channel_names'])} | {lo:.2f}–{hi:.2f} | "
            f"{cal['offset']:g} | {cal['scale']:.6g} | {e['solver']['steps']} | "
            f"{e['solver']['residual_max']:.1e} |"
        )
    return "\n".join(lines) + "\n"
