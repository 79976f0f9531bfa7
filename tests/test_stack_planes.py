"""The planes of a stack, checked one by one (pipeline.plane_qc), through the real stages: a
blank plane (flag empty-plane), an intensity that drifted from the plane whose calibration the
stack shares (flag intensity-drift, --calibrate-planes each) and NaN pixels (flag
nan-pixels)."""

import numpy as np
import tifffile

from pipeline.config import Settings
from pipeline.io import open_result_store
from pipeline.process import process_image
from pipeline.summary import store_notes, summarize_store

FAST = {"method": "closed-form", "estimator": {"delta_um": 0.06, "window_um": 0.06}}


def _flags(store) -> list[str]:
    """The plane's flags, less ``calibration-unidentifiable``: whether an automatic
    calibration is identifiable is the calibration's own decision (tested with it)."""
    flags = summarize_store(store)["images"]["flags"].iloc[0].split(";")
    return [f for f in flags if f != "calibration-unidentifiable"]


def test_empty_plane_of_a_stack_reports_no_lambda(tmp_path):
    """A blank plane (one value everywhere) in a Z stack: no λ, flag empty-plane, a note; the
    other planes are fitted as they would be alone. Before, the flat plane was read as
    chromatin at a uniform occupancy: λ 1e-12 with a std of 1e-27, 98 % identifiable."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:64, :64]
    cell = ((yy - 30) ** 2 + (xx - 34) ** 2 < 20**2) * 800.0
    plane = rng.poisson(cell + 100).astype(np.uint16)
    stack = np.stack([plane, np.zeros_like(plane), plane])
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "stack.ome.tif", stack, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02,
                               "PhysicalSizeZ": 0.2})
    s = Settings(**FAST, run={"denoise": "none"})
    m = process_image(tmp_path / "in" / "stack.ome.tif", tmp_path / "out", s)
    rows = summarize_store(m["store"])["images"].set_index("plane")
    assert "empty-plane" in rows.loc[1, "flags"].split(";")
    assert not any("empty-plane" in rows.loc[p, "flags"] for p in (0, 2))
    assert np.isnan(rows.loc[1, "lambda_median"]) and rows.loc[1, "fraction_identifiable"] == 0
    assert np.isfinite(rows.loc[0, "lambda_median"])
    assert rows.loc[0, "lambda_median"] == rows.loc[2, "lambda_median"]
    lam = np.asarray(open_result_store(m["store"])["rates"])
    assert np.isnan(lam[1]).all() and np.isfinite(lam[0]).any()
    _, notes = store_notes(m["store"])
    assert any("plane 1: the heterochromatin channel is 0 everywhere" in n for n in notes)
    # a blank first plane: the others are fitted (calibrated without it), as they were
    first = tmp_path / "in2" / "first.ome.tif"
    first.parent.mkdir()
    tifffile.imwrite(first, stack[[1, 0, 2]], ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02,
                               "PhysicalSizeZ": 0.2})
    m2 = process_image(first, tmp_path / "out2", s)
    rows2 = summarize_store(m2["store"])["images"].set_index("plane")
    assert list(rows2.index) == [0, 1, 2]
    assert "empty-plane" in rows2.loc[0, "flags"] and np.isnan(rows2.loc[0, "lambda_median"])
    assert rows2.loc[1, "lambda_median"] == rows.loc[0, "lambda_median"]
    lam2 = np.asarray(open_result_store(m2["store"])["rates"])
    np.testing.assert_array_equal(lam2[1], lam[0])


def test_intensity_drift_along_a_stack_is_flagged(tmp_path):
    """Plane 1 at 0.8 times plane 0's intensity above the dark level (bleaching): it shares
    plane 0's calibration, so its single-channel λ falls; it is flagged intensity-drift with
    a note naming the ratio. Plane 2 at 0.95 is within 10 %: no flag."""
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[:128, :128]  # one nucleus 4 µm across in a dark background
    cell = ((yy - 60) ** 2 + (xx - 66) ** 2 < 40**2) * (800.0 + 200 * np.sin(yy / 5.0))
    stack = np.stack([rng.poisson(cell * f + 100) for f in (1.0, 0.8, 0.95)]).astype(np.uint16)
    path = tmp_path / "in" / "bleach.ome.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, stack, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.05, "PhysicalSizeY": 0.05, "PhysicalSizeZ": 0.2})
    # 0.3 µm: at 0.15 µm this image's λ is noise-dominated (planes at 1.0 and 0.95 differ
    # by 27 % through the noise alone)
    fast = {"method": "closed-form", "estimator": {"delta_um": 0.3, "window_um": 0.3}}
    m = process_image(path, tmp_path / "out", Settings(**fast, run={"denoise": "none"}))
    rows = summarize_store(m["store"])["images"].set_index("plane")
    flagged = [p for p in (0, 1, 2) if "intensity-drift" in rows.loc[p, "flags"].split(";")]
    assert flagged == [1], rows["flags"]
    assert rows.loc[1, "lambda_median"] < 0.8 * rows.loc[0, "lambda_median"]  # 0.70 here
    _, notes = store_notes(m["store"])
    drift = [n for n in notes if "intensity above the dark level" in n]
    assert len(drift) == 1 and drift[0].startswith("plane 1:")
    assert "0.8" in drift[0] and "times that of plane 0" in drift[0]
    # with --calibration auto each plane is calibrated on its own: nothing to flag
    auto = process_image(path, tmp_path / "out_auto", Settings(
        **fast, calibration="auto", run={"denoise": "none"}))
    assert not any("intensity-drift" in f for f in summarize_store(auto["store"])["images"][
        "flags"])
    # --calibrate-planes each: plane 1 is calibrated on its own, so its λ is back near plane
    # 0's (the single-channel scale is a nuclear median), and nothing is flagged
    each = process_image(path, tmp_path / "out_each", Settings(
        **fast, calibrate_planes="each", run={"denoise": "none"}))
    rows_each = summarize_store(each["store"])["images"].set_index("plane")
    assert not any("intensity-drift" in f for f in rows_each["flags"])
    assert rows_each.loc[0, "lambda_median"] == rows.loc[0, "lambda_median"]
    assert abs(rows_each.loc[1, "lambda_median"] / rows_each.loc[0, "lambda_median"] - 1) < 0.05


def test_nan_background_is_read_as_outside_the_nuclei(tmp_path):
    """A float image whose background was set to NaN (Fiji's NaN Background): read, not
    refused; no λ on the NaN pixels nor within the derivative support of them; elsewhere
    exactly the λ of the same image with a 0 background; flag nan-pixels with a note. A NaN
    hole inside the nucleus: no λ around it; beyond the fit's reach (20 px here) the λ of the
    image without the hole."""
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:128, :128]
    inside = (yy - 60) ** 2 + (xx - 66) ** 2 < 40**2
    img = rng.poisson(inside * (800.0 + 200 * np.sin(yy / 5.0)) + 5).astype(np.float32)
    images = {"zero": np.where(inside, img, 0).astype(np.float32),
              "nan": np.where(inside, img, np.nan).astype(np.float32)}
    images["hole"] = images["nan"].copy()
    images["hole"][60, 66] = np.nan
    md = {"axes": "YX", "PhysicalSizeX": 0.05, "PhysicalSizeY": 0.05}
    fast = {"method": "closed-form", "estimator": {"delta_um": 0.15, "window_um": 0.15},
            "run": {"denoise": "none"}}
    stores = {}
    for name, data in images.items():
        (tmp_path / name).mkdir()
        tifffile.imwrite(tmp_path / name / f"{name}.ome.tif", data, ome=True, metadata=md)
        stores[name] = process_image(tmp_path / name / f"{name}.ome.tif", tmp_path / f"o{name}",
                                     Settings(**fast))["store"]
    lam = {k: np.asarray(open_result_store(v)["rates"])[0] for k, v in stores.items()}
    ok = {k: np.isfinite(v) for k, v in lam.items()}
    assert not ok["nan"][~inside].any() and ok["nan"].sum() > 0.5 * ok["zero"].sum()
    assert not (ok["nan"] & ~ok["zero"]).any()  # the edge band within the support is dropped
    np.testing.assert_array_equal(lam["nan"][ok["nan"]], lam["zero"][ok["nan"]])
    near = np.hypot(yy - 60, xx - 66)
    assert not ok["hole"][near < 3].any() and ok["hole"][near >= 20].sum() > 1000
    np.testing.assert_allclose(lam["hole"][near >= 20], lam["nan"][near >= 20], rtol=1e-4)
    for name in ("nan", "hole"):
        assert "nan-pixels" in _flags(stores[name])
        assert any("are NaN in the file" in n for n in store_notes(stores[name])[1])
    assert "nan-pixels" not in _flags(stores["zero"])


def test_planes_of_noise_only_report_no_lambda(tmp_path):
    """Planes of camera noise only (above and below the cell) around a plane with a nucleus:
    no λ for them, flag no-signal, a note; the nucleus plane is calibrated on itself, not on
    the noise before it, so its λ is that of the same plane alone. Before, the noise planes
    were fitted as a uniform nucleus (λ reported on most of the field) and the first one set
    the stack's calibration."""
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:128, :128]
    cell = ((yy - 60) ** 2 + (xx - 66) ** 2 < 40**2) * (800.0 + 200 * np.sin(yy / 5.0))
    nucleus = rng.poisson(cell + 100).astype(np.uint16)
    stack = np.stack([rng.poisson(np.full(cell.shape, 100.0)).astype(np.uint16), nucleus,
                      rng.poisson(np.full(cell.shape, 100.0)).astype(np.uint16)])
    md = {"axes": "ZYX", "PhysicalSizeX": 0.05, "PhysicalSizeY": 0.05, "PhysicalSizeZ": 0.2}
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "stack.ome.tif", stack, ome=True, metadata=md)
    tifffile.imwrite(tmp_path / "in" / "alone.ome.tif", nucleus, ome=True,
                     metadata={k: v for k, v in md.items() if k != "PhysicalSizeZ"} |
                     {"axes": "YX"})
    fast = {"method": "closed-form", "estimator": {"delta_um": 0.3, "window_um": 0.3}}
    s = Settings(**fast, run={"denoise": "none"})
    m = process_image(tmp_path / "in" / "stack.ome.tif", tmp_path / "out", s)
    rows = summarize_store(m["store"])["images"].set_index("plane")
    for p in (0, 2):
        assert "no-signal" in rows.loc[p, "flags"].split(";")
        assert np.isnan(rows.loc[p, "lambda_median"])
        assert rows.loc[p, "fraction_identifiable"] == 0
    assert "no-signal" not in rows.loc[1, "flags"]
    lam = np.asarray(open_result_store(m["store"])["rates"])
    assert np.isnan(lam[[0, 2]]).all()
    alone = process_image(tmp_path / "in" / "alone.ome.tif", tmp_path / "out2", s)
    ref = np.asarray(open_result_store(alone["store"])["rates"]).reshape(lam[1].shape)
    assert np.isfinite(ref[0]).sum() > 1000
    np.testing.assert_array_equal(lam[1], ref)
    _, notes = store_notes(m["store"])
    assert any("plane 0: the heterochromatin channel shows no structure above its noise" in n
               for n in notes)
