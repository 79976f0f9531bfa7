"""Pixel sizes from the metadata a TIFF carries (ImageJ units, OME units, a TIFF resolution
tag, MetaMorph's spatial calibration), the --pixel-size override and non-square pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.io import InputError, inspect_tiff, write_tiff


@pytest.mark.parametrize(
    ("unit", "factor"),
    [("micron", 1.0), ("\\u00B5m", 1.0), ("um", 1.0), ("nm", 1e-3), ("mm", 1e3)],
)
def test_imagej_units(tmp_path: Path, unit: str, factor: float) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 5), np.uint16),
        imagej=True,
        resolution=(1 / 40.0, 1 / 40.0),
        metadata={"unit": unit},
    )
    info = inspect_tiff(path)
    assert info.pixel_size_source == "imagej"
    assert info.pixel_size_um == pytest.approx(40.0 * factor)


@pytest.mark.parametrize(
    ("unit", "value", "um"),
    [("nm", 65.0, 0.065), ("Å", 650.0, 0.065), ("mm", 6.5e-5, 0.065), ("m", 6.5e-8, 0.065)],
)
def test_ome_units(tmp_path: Path, unit: str, value: float, um: float) -> None:
    path = tmp_path / "u.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 5), np.uint16),
        ome=True,
        metadata={
            "axes": "YX",
            "PhysicalSizeX": value,
            "PhysicalSizeXUnit": unit,
            "PhysicalSizeY": value,
            "PhysicalSizeYUnit": unit,
        },
    )
    assert inspect_tiff(path).pixel_size_um == pytest.approx(um)



def test_bad_ome_size_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "zero.ome.tif"
    meta = {"axes": "YX", "PhysicalSizeX": 0.0, "PhysicalSizeY": 0.0}
    tifffile.imwrite(path, np.zeros((4, 5), np.uint16), ome=True, metadata=meta)
    with pytest.raises(InputError, match="no pixel size"):
        inspect_tiff(path)


def test_resolution_tag_and_print_dpi(tmp_path: Path) -> None:
    good, dpi = tmp_path / "cm.tif", tmp_path / "dpi.tif"
    tifffile.imwrite(
        good, np.zeros((4, 5), np.uint16), resolution=(2e5, 2e5), resolutionunit="CENTIMETER"
    )
    tifffile.imwrite(dpi, np.zeros((4, 5), np.uint16), resolution=(72, 72), resolutionunit="INCH")
    info = inspect_tiff(good)
    assert (info.pixel_size_um, info.pixel_size_source) == (pytest.approx(0.05), "resolution")
    with pytest.raises(InputError, match="--pixel-size"):
        inspect_tiff(dpi)


def _metaseries(path: Path, x: str, units: str = "um", state: str = "on") -> Path:
    """A file as MetaMorph writes it (the XML layout of a real MetaSeries TIFF, trimmed)."""
    xml = ("<MetaData>\n<prop id=\"Description\" type=\"string\" value=\"Exposure: 400 ms\"/>\n"
           "<prop id=\"MetaDataVersion\" type=\"float\" value=\"1\"/>\n"
           "<prop id=\"ApplicationName\" type=\"string\" value=\"MetaMorph\"/>\n"
           "<PlaneInfo>\n"
           f"<prop id=\"spatial-calibration-state\" type=\"bool\" value=\"{state}\"/>\n"
           f"<prop id=\"spatial-calibration-x\" type=\"float\" value=\"{x}\"/>\n"
           f"<prop id=\"spatial-calibration-y\" type=\"float\" value=\"{x}\"/>\n"
           f"<prop id=\"spatial-calibration-units\" type=\"string\" value=\"{units}\"/>\n"
           "<prop id=\"image-name\" type=\"string\" value=\"Camera NIR\"/>\n"
           "</PlaneInfo>\n<SetInfo>\n</SetInfo>\n</MetaData>")
    tifffile.imwrite(path, np.zeros((64, 80), np.uint16), description=xml,
                     software="MetaSeries", metadata=None)
    return path


def test_metamorph_spatial_calibration(tmp_path: Path) -> None:
    """MetaMorph (MetaSeries) states the pixel size in its XML, not in a resolution tag."""
    info = inspect_tiff(_metaseries(tmp_path / "mm.tif", "0.645"))
    assert (info.pixel_size_um, info.pixel_size_source) == (pytest.approx(0.645), "metaseries")
    nm = inspect_tiff(_metaseries(tmp_path / "nm.tif", "40", units="nm"))
    assert nm.pixel_size_um == pytest.approx(0.04)
    for name, kw in (("off", {"state": "off"}), ("px", {"units": "pixel"})):
        with pytest.raises(InputError, match="MetaMorph"):  # uncalibrated: not a length
            inspect_tiff(_metaseries(tmp_path / f"{name}.tif", "1", **kw))


def test_override_beats_metadata(tmp_path: Path) -> None:
    path = write_tiff(tmp_path / "a.tif", np.zeros((4, 5), np.uint16), axes="YX", pixel_size_um=0.1)
    info = inspect_tiff(path, pixel_size_um=0.02)
    assert (info.pixel_size_um, info.pixel_size_source) == (0.02, "override")


def test_anisotropic_pixels_refused(tmp_path: Path) -> None:
    path = tmp_path / "aniso.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 5), np.uint16),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.102},
    )
    with pytest.raises(InputError, match="differ in X"):
        inspect_tiff(path)
    assert inspect_tiff(path, pixel_size_um=0.1).pixel_size_um == 0.1
    tifffile.imwrite(
        path,
        np.zeros((4, 5), np.uint16),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1005},
    )
    assert inspect_tiff(path).pixel_size_um == pytest.approx(0.1)
