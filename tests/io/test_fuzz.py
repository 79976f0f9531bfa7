"""Fuzzed inputs (issue 16): corrupted TIFFs and OME-XML either process or fail with one line
that names the file; never a traceback, never a hang, and the input is never modified.

Hypothesis draws a valid base file (OME-TIFF, ImageJ hyperstack, plain TIFF with a
resolution, tiled and compressed OME-TIFF) and one corruption: byte flips, truncation, an
edited tag of the first page, an edited OME-XML attribute (or broken XML), absurd declared
dimensions with no pixels behind them, or pixels of another dtype. Each case runs in a
separate worker process (spawned once and replaced after a hang), with a per-case timeout
and a cap on its memory: the ingest stage (:func:`pipeline.process.ingest`) and the pixel
read of the denoise stage (``denoise="none"``: every plane read through the stage's error
handling); a few small cases run the whole :func:`pipeline.process.process_image`.

A pass means: nothing raised, or an :class:`~pipeline.io.InputError` /
:class:`~pipeline.process.ImageError` whose one-line ``str()`` starts with the file's path.
CI runs ``CHROMARATE_FUZZ_EXAMPLES`` cases (default 40, the same ones every run); a
nightly-style run sets it to 500 or more, ``CHROMARATE_FUZZ_SEED`` draws other cases, and
``CHROMARATE_FUZZ_REPORT=path.json`` writes the tally (docs/when-things-go-wrong.md records
the runs made).
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

N_EXAMPLES = int(os.environ.get("CHROMARATE_FUZZ_EXAMPLES", "40"))
SEED = os.environ.get("CHROMARATE_FUZZ_SEED")  # unset: the same cases every run
TIMEOUT_S = float(os.environ.get("CHROMARATE_FUZZ_TIMEOUT_S", "60"))  # per case; generous
MEMORY_CAP = 3 << 30  # bytes of heap per worker: an absurd allocation is a MemoryError
PX = 0.02
SHAPE = (2, 48, 48)
TAGS = {"ImageWidth": 256, "ImageLength": 257, "BitsPerSample": 258, "Compression": 259,
        "Photometric": 262, "StripOffsets": 273, "SamplesPerPixel": 277, "RowsPerStrip": 278,
        "StripByteCounts": 279, "PlanarConfiguration": 284, "TileWidth": 322,
        "TileLength": 323, "TileOffsets": 324, "TileByteCounts": 325, "SampleFormat": 339,
        "ImageDescription": 270, "XResolution": 282, "ResolutionUnit": 296}
TAG_VALUES = (0, 1, 2, 3, 5, 7, 8, 12, 16, 32, 64, 255, 65535, 2**31 - 1, 2**32 - 1)
OME_ATTRS = ("SizeX", "SizeY", "SizeC", "SizeZ", "SizeT", "Type", "DimensionOrder",
             "PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeXUnit", "SamplesPerPixel")
OME_VALUES = ("0", "-1", "1", "3", "99999999", "1e300", "nan", "inf", "abc", "", "uint64",
              "float", "bit", "complex", "XYZCT", "XYCZT", "XYTZC", "QQQQQ", "mm", "parsec")
DTYPES = ("bool", "int8", "uint8", "int16", "int32", "uint32", "int64", "uint64", "float16",
          "float64", "complex64")
ABSURD = ((2, 100_000, 100_000), (1, 1, 70_000), (3000, 2, 64, 64), (2, 65_535, 1),
          (1, 2, 46_341, 46_341))


# ---------------------------------------------------------------- base files and mutations


def _bases(folder: Path) -> dict[str, Path]:
    from pipeline.io import write_tiff

    rng = np.random.default_rng(0)
    two = (rng.poisson(200, SHAPE) + 100).astype(np.uint16)
    files = {
        "ome": lambda p: write_tiff(p, two, axes="CYX", pixel_size_um=PX),
        "imagej": lambda p: tifffile.imwrite(
            p, two.astype(np.float32)[None], imagej=True, resolution=(1 / PX, 1 / PX),
            metadata={"axes": "ZCYX", "unit": "um"}),
        "plain": lambda p: tifffile.imwrite(p, two[0], resolution=(1e4 / PX, 1e4 / PX),
                                            resolutionunit="CENTIMETER"),
        "tiled": lambda p: tifffile.imwrite(
            p, two, ome=True, tile=(16, 16), compression="zlib",
            metadata={"axes": "CYX", "PhysicalSizeX": PX, "PhysicalSizeY": PX}),
    }
    out = {}
    for name, write in files.items():
        path = folder / "bases" / f"{name}.tif"
        path.parent.mkdir(exist_ok=True)
        write(path)
        out[name] = path
    return out


def _flip(data: bytes, flips: list[tuple[float, int]]) -> bytes:
    buf = bytearray(data)
    for where, mask in flips:
        buf[min(int(where * len(buf)), len(buf) - 1)] ^= mask
    return bytes(buf)


def _edit_tag(path: Path, data: bytes, tag: int, value: int) -> bytes:
    """``data`` with the first value of the first page's ``tag`` set to ``value``."""
    import struct

    path.write_bytes(data)
    with tifffile.TiffFile(path) as tif:
        t = tif.pages.first.tags.get(tag)
        if t is None:
            return data
        code = tifffile.TIFF.DATA_FORMATS[int(t.dtype)][-1]
        order, offset = tif.byteorder, t.valueoffset
    size = struct.calcsize(order + code)
    buf = bytearray(data)
    buf[offset:offset + size] = (value % (1 << (8 * size))).to_bytes(
        size, "little" if order == "<" else "big")
    return bytes(buf)


def _edit_ome(path: Path, data: bytes, how: str, attr: str, value: str) -> bytes:
    """``data`` re-written with its OME-XML edited (an attribute, or the XML broken)."""
    path.write_bytes(data)
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata or tif.pages.first.description
        pixels = tif.asarray()
    if how == "attribute":
        import re

        xml = re.sub(rf'{attr}="[^"]*"', f'{attr}="{value}"', xml, count=1)
    elif how == "truncate":
        xml = xml[: len(xml) // 2]
    else:  # garbage inside the Pixels element
        xml = xml.replace("<Pixels ", f"<Pixels {value}=<&> ", 1)
    tifffile.imwrite(path, pixels, description=xml.encode("utf-8", "replace"),
                     metadata=None)
    return path.read_bytes()


def _absurd(path: Path, shape: tuple[int, ...], keep: int) -> bytes:
    axes = {3: "CYX", 4: "ZCYX"}[len(shape)]
    tifffile.imwrite(path, shape=shape, dtype=np.uint16, ome=True,
                     metadata={"axes": axes, "PhysicalSizeX": PX, "PhysicalSizeY": PX})
    os.truncate(path, min(keep, path.stat().st_size))
    return path.read_bytes()


def _dtype(path: Path, dtype: str, extreme: bool) -> bytes:
    from pipeline.io import write_tiff

    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    if dt.kind in "iu" and extreme:
        info = np.iinfo(dt)
        data = rng.choice([info.min, info.max], SHAPE).astype(dt)
    elif dt.kind == "f" and extreme:
        data = rng.choice([np.finfo(dt).max, -np.finfo(dt).max, 0], SHAPE).astype(dt)
    else:
        data = (rng.random(SHAPE) * 100 + 10).astype(dt)
    try:
        write_tiff(path, data, axes="CYX", pixel_size_um=PX)
    except Exception:  # a dtype that chromarate's writer does not take: write it plainly
        tifffile.imwrite(path, data, metadata={"axes": "CYX"}, resolution=(1e4 / PX, 1e4 / PX),
                         resolutionunit="CENTIMETER")
    return path.read_bytes()


mutations = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                        min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0, 0.999)),
    st.tuples(st.just("tag"), st.sampled_from(sorted(TAGS)),
              st.one_of(st.sampled_from(TAG_VALUES), st.integers(0, 2**32 - 1))),
    st.tuples(st.just("ome"), st.sampled_from(("attribute", "attribute", "truncate", "garbage")),
              st.sampled_from(OME_ATTRS), st.sampled_from(OME_VALUES)),
    st.tuples(st.just("absurd"), st.sampled_from(ABSURD), st.sampled_from((0, 8, 200, 4096))),
    st.tuples(st.just("dtype"), st.sampled_from(DTYPES), st.booleans()),
)


def _make(folder: Path, bases: dict[str, Path], base: str, mutation: tuple) -> Path:
    path = folder / f"case-{uuid.uuid4().hex[:8]}.tif"
    kind, *args = mutation
    data = bases[base].read_bytes()
    if kind == "flip":
        data = _flip(data, args[0])
    elif kind == "truncate":
        data = data[: int(args[0] * len(data))]
    elif kind == "tag":
        data = _edit_tag(path, data, TAGS[args[0]], args[1])
    elif kind == "ome":
        data = _edit_ome(path, bases["ome"].read_bytes(), *args)
    elif kind == "absurd":
        data = _absurd(path, *args)
    else:
        data = _dtype(path, *args)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- the worker process


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))


def _case(path: str, out: str, full: bool) -> tuple[str, str]:
    """Run one case; returns ``("ok" | "refused" | "bug", detail)``."""
    import traceback

    from pipeline import process
    from pipeline.config import Settings
    from pipeline.io import InputError

    s = Settings(method="closed-form", estimator={"delta_um": 0.1, "window_um": 0.1},
                 run={"denoise": "none"})
    try:
        if full:
            process.process_image(path, out, s)
        else:
            manifest = process.ingest(path, out, s)
            process.denoise_image(manifest, s)  # reads every plane through the stage's errors
        return "ok", ""
    except (InputError, process.ImageError) as exc:
        return "refused", f"{type(exc).__name__}: {exc}"
    except BaseException:
        return "bug", traceback.format_exc()


class _Worker:
    """One spawned process that runs cases; replaced after a hang."""

    def __init__(self) -> None:
        self.pool = None

    def run(self, path: Path, out: Path, full: bool) -> tuple[str, str]:
        if self.pool is None:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(1, initializer=_limit_memory)
        job = self.pool.apply_async(_case, (str(path), str(out), full))
        try:
            return job.get(timeout=TIMEOUT_S)
        except multiprocessing.TimeoutError:
            self.close()
            return "hang", f"no answer within {TIMEOUT_S:.0f} s"
        except Exception as exc:  # the worker died (killed for memory, a crash in C)
            self.close()
            return "bug", f"the worker died: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    worker = _Worker()
    tally: dict = {"cases": 0, "outcomes": collections.Counter(), "kinds": collections.Counter(),
                   "problems": []}
    yield folder, _bases(folder), worker, tally
    worker.close()
    report = os.environ.get("CHROMARATE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({**tally, "outcomes": dict(tally["outcomes"]),
                                            "kinds": dict(tally["kinds"])}, indent=2))


@settings(max_examples=N_EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
          suppress_health_check=list(HealthCheck))
@hypothesis.seed(int(SEED or 0))
@given(base=st.sampled_from(("ome", "imagej", "plain", "tiled")), mutation=mutations,
       full=st.integers(0, 7))
# found by the 500-case run: a tiled file whose width was damaged read as a 48 x 552577 image
# of missing tiles (over a minute); now refused at inspection (pipeline.io.tiff)
@example(base="tiled", mutation=("tag", "ImageWidth", 552577), full=1)
def test_corrupted_inputs_process_or_fail_with_one_named_line(fuzz_env, base, mutation, full):
    folder, bases, worker, tally = fuzz_env
    path = _make(folder, bases, base, mutation)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = folder / f"out-{path.stem}"
    full = full == 0 and mutation[0] in ("dtype", "ome")
    tally["full"] = tally.get("full", 0) + full
    try:
        status, detail = worker.run(path, out, full)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    after = hashlib.sha256(path.read_bytes()).hexdigest()
    tally["cases"] += 1
    tally["outcomes"][status] += 1
    tally["kinds"][mutation[0]] += 1
    named = status != "refused" or (
        detail.split(": ", 1)[1].startswith(str(path)) and "\n" not in detail
        and "Traceback" not in detail)
    if status in ("bug", "hang") or not named or before != after:
        tally["problems"].append({"base": base, "mutation": repr(mutation), "status": status,
                                  "detail": detail[-1500:]})
    path.unlink()
    assert before == after, f"the input was modified ({mutation})"
    assert status in ("ok", "refused"), f"{base} {mutation}: {status}\n{detail}"
    assert named, f"{base} {mutation}: not one line naming the file: {detail}"
