"""Compressed TIFFs: every codec the installation brings (imagecodecs) is read bit for bit,
and inspection decodes the first strip or tile, so a missing codec or a damaged compressed
strip is refused before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.io import InputError, inspect_tiff, read_planes


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "lzw"},  # ImageJ/Fiji and many vendors' exports
        {"compression": "lzw", "predictor": True},
        {"compression": "zstd"},
        {"compression": "packbits"},
        {"compression": "jpeg2000", "compressionargs": {"level": 0}},  # lossless
        {"compression": "zlib", "tile": (32, 32)},
    ],
    ids=lambda o: "-".join(str(v) for v in o.values()),
)
def test_compressed_tiffs_are_read(tmp_path: Path, options: dict) -> None:
    """The codecs of compressed TIFFs come with the installation (imagecodecs): each file is
    inspected and read back bit for bit."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 64, 64), dtype=np.uint16)
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(50, 50),
                     metadata={"axes": "CYX", "unit": "um"}, **options)
    info = inspect_tiff(path)
    assert (info.n_channels, info.pixel_size_um) == (2, pytest.approx(0.02))
    np.testing.assert_array_equal(read_planes(path, info).compute()[0], data)


def test_float_predictor_is_read(tmp_path: Path) -> None:
    """A float32 rendering with the floating-point predictor (ThunderSTORM-like exports)."""
    data = np.random.default_rng(1).random((64, 64), dtype=np.float32) * 50
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(50, 50), metadata={"unit": "um"},
                     compression="zlib", predictor=3)
    np.testing.assert_array_equal(read_planes(path, inspect_tiff(path)).compute()[0, 0], data)


def test_undecodable_strip_is_refused_at_inspection(tmp_path: Path) -> None:
    """A compressed strip that does not decode is refused before any work, naming the file."""
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
                     imagej=True, resolution=(50, 50), metadata={"unit": "um"},
                     compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = bytes(16)  # the zlib header and first block gone
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="does not decode") as refused:
        inspect_tiff(path)
    err = refused.value
    assert str(err).startswith(f"{path}: ") and err.path == path
    assert "ADOBE_DEFLATE" in str(err) and str(err).startswith(str(path))


def test_missing_codec_is_named(tmp_path: Path) -> None:
    """Where imagecodecs cannot be imported (a partial install), an LZW file is refused at
    inspection with the codec and the package to install, not as a damaged file. Run in a
    fresh interpreter in which importing imagecodecs fails, as it does without the package."""
    import subprocess
    import sys

    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, np.ones((32, 32), np.uint16), imagej=True, resolution=(50, 50),
                     metadata={"unit": "um"}, compression="lzw")
    code = (
        "import sys; sys.modules['imagecodecs'] = None\n"
        "from pipeline.io import inspect_tiff, InputError\n"
        f"try:\n    inspect_tiff({str(path)!r})\nexcept InputError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert "compressed with LZW" in out and "pip install imagecodecs" in out, out


def test_jpeg_with_shared_tables_is_read(tmp_path: Path) -> None:
    """libtiff's JPEG TIFFs (written here by Pillow) keep the quantisation tables in a
    JPEGTables tag: inspection decodes the first strip with them, as tifffile's reader does
    (without them: 'Quantization table 0x00 was not defined', a valid file refused)."""
    from PIL import Image

    data = (np.random.default_rng(2).random((64, 64)) * 200).astype(np.uint8)
    path = tmp_path / "pil.tif"
    Image.fromarray(data).save(path, compression="jpeg")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].jpegtables is not None
    info = inspect_tiff(path, pixel_size_um=0.02)
    planes = read_planes(path, info).compute()[0, 0]
    assert np.abs(planes.astype(float) - data).mean() < 10  # lossy, but the same image
