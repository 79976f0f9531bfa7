"""The per-image manifest is a typed model (``pipeline.manifest.ImageManifest``): what ingest
returns, what every stage and Prefect task receives; JSON and pickle round trips keep it, a
dict from JSON is accepted by the stages, and a foreign one fails with the key it lacks."""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import ValidationError

from pipeline import process
from pipeline.config import Settings
from pipeline.manifest import ImageManifest
from pipeline.simulate import simulate_folder


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    simulate_folder(root / "images", truth_dir=root / "truth", shape=(48, 48),
                    cases=[("smooth", 2)], seed=3)
    return root / "images" / "smooth_2ch_s3.tif"


def test_ingest_returns_a_typed_manifest(image, tmp_path):
    m = process.ingest(image, tmp_path / "out", Settings())
    assert isinstance(m, ImageManifest)
    assert m.roles == ("chromatin", "heterochromatin") and m.shape[-2:] == (48, 48)
    assert m.plane_axis is None and m.n_planes == 1 and not m.done
    assert m.store.endswith("smooth_2ch_s3.ome.zarr") and m.key in m.work
    with pytest.raises(ValidationError):  # frozen: a stage cannot change what the next reads
        m.key = "other"  # type: ignore[misc]
    # the former dict reads still work (tests, benchmarks written against it)
    assert m["store"] == m.store and m.get("nuclei_path") is None and m.get("nope", 1) == 1
    with pytest.raises(KeyError):
        m["nope"]


def test_round_trips_and_a_dict_from_json(image, tmp_path):
    settings = Settings(run={"denoise": "none"})
    m = process.ingest(image, tmp_path / "out", settings)
    as_json = json.loads(m.model_dump_json())
    assert ImageManifest.of(as_json) == m
    assert pickle.loads(pickle.dumps(m)) == m  # ships to dask workers
    # another version's keys are ignored; the optional ones default
    old = {k: v for k, v in as_json.items() if k not in ("axes_note", "z_step_source")}
    assert ImageManifest.of(old | {"from_the_future": 1}).axes_note is None
    # a stage takes the dict as it takes the model, and finds the same work
    first = process.denoise_image(as_json, settings)
    assert process.denoise_image(m, settings) == first


def test_a_foreign_manifest_names_what_it_lacks(image, tmp_path):
    m = process.ingest(image, tmp_path / "out", Settings())
    broken = m.model_dump(mode="json")
    del broken["work"]
    broken["roles"] = ["dna"]
    with pytest.raises(ValueError) as err:
        process.denoise_image(broken, Settings())
    assert "work" in str(err.value) and "roles.0" in str(err.value)
    assert "ingest the image again" in str(err.value)


def test_process_image_still_returns_a_dict(image, tmp_path):
    """``process_image`` keeps its dict result (the manifest plus store, timings, skipped)."""
    settings = Settings(run={"denoise": "none"}, estimator={"delta_um": 0.1, "window_um": 0.1})
    res = process.process_image(image, tmp_path / "out", settings)
    assert isinstance(res, dict) and res["skipped"] is False
    assert res["roles"] == ["chromatin", "heterochromatin"] and set(res["timings_s"]) >= {"fit"}
    again = process.process_image(image, tmp_path / "out", settings)
    assert again["skipped"] is True and again["store"] == res["store"]
