"""Sample sheets and condition comparisons, on constructed tables whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.compare import (
    attach_samples,
    bootstrap_median_ci,
    compare_conditions,
    file_key,
    holm,
    match_samples,
    permutation_p,
    read_sample_sheet,
    unit_values,
    write_comparison,
    write_sample_sheet,
)
from pipeline.io import InputError

SEED = 7  # test data seed (the statistics use their own constant seed)


def _nuclei(image_means: dict[str, list[float]], per_image: int = 10, sd: float = 0.05,
            seed: int = SEED, replicates: int | None = None) -> pd.DataFrame:
    """A nuclei table: per condition, images with the given means; nuclei scatter by ``sd``
    around their image's mean (nuclei of one image are alike: clustered data)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cond, means in image_means.items():
        for i, m in enumerate(means):
            rep = None if replicates is None else str(i % replicates + 1)
            for v in rng.normal(m, sd, per_image):
                rows.append({"file": f"{cond}_{i}.tif", "condition": cond, "replicate": rep,
                             "lambda_median": v})
    return pd.DataFrame(rows)


def _row(table: pd.DataFrame, cond: str) -> pd.Series:
    return table.set_index("condition").loc[cond]


def test_identical_conditions_give_no_difference_and_a_large_p() -> None:
    means = [1.0, 1.4, 0.8, 1.2, 1.1, 0.9]
    a = _nuclei({"ctl": means}, seed=1)
    b = a.assign(condition="trt", file=a["file"].str.replace("ctl", "trt"))
    t = compare_conditions(pd.concat([a, b]), "condition", reference="ctl")
    trt = _row(t, "trt")
    assert trt["diff_vs_reference"] == 0.0 and trt["p_value"] == pytest.approx(1.0)
    assert trt["diff_ci95_low"] < 0 < trt["diff_ci95_high"]
    # two draws from one distribution of image means: p is not small
    rng = np.random.default_rng(3)
    t = compare_conditions(_nuclei({"ctl": list(rng.normal(1, 0.2, 6)),
                                    "trt": list(rng.normal(1, 0.2, 6))}), "condition")
    assert _row(t, "trt")["p_value"] > 0.2


def test_a_large_shift_gives_a_small_p_and_an_interval_around_it() -> None:
    rng = np.random.default_rng(4)
    t = compare_conditions(_nuclei({"ctl": list(rng.normal(1, 0.1, 6)),
                                    "trt": list(rng.normal(2, 0.1, 6))}), "condition",
                           reference="ctl")
    trt = _row(t, "trt")
    assert trt["p_value"] == pytest.approx(2 / 924)  # exact: the most extreme of C(12, 6)
    assert trt["p_min"] == pytest.approx(2 / 924)
    assert 0.8 < trt["diff_ci95_low"] < trt["diff_vs_reference"] < trt["diff_ci95_high"] < 1.2
    ctl = _row(t, "ctl")
    assert ctl["n_images"] == 6 and ctl["n_nuclei"] == 60 and np.isnan(ctl["p_value"])
    assert ctl["ci95_low"] < ctl["median_lambda"] < ctl["ci95_high"]


def test_more_nuclei_per_image_do_not_shrink_the_interval() -> None:
    """Pseudo-replication: copying every nucleus 20 times leaves every number unchanged,
    and the interval reflects the spread between images, not the (tiny) one of nuclei."""
    data = _nuclei({"ctl": [1.0, 1.5, 0.7, 1.3], "trt": [1.6, 2.4, 1.9, 2.2]}, per_image=5)
    many = pd.concat([data] * 20, ignore_index=True)
    one, twenty = compare_conditions(data, "condition"), compare_conditions(many, "condition")
    cols = ["median_lambda", "ci95_low", "ci95_high", "diff_vs_reference", "diff_ci95_low",
            "diff_ci95_high", "p_value"]
    pd.testing.assert_frame_equal(one[cols], twenty[cols])
    assert list(twenty["n_nuclei"]) == [400, 400] and list(twenty["n_images"]) == [4, 4]
    ctl = _row(one, "ctl")
    naive = bootstrap_median_ci(many.loc[many["condition"] == "ctl", "lambda_median"])
    assert ctl["ci95_high"] - ctl["ci95_low"] > 3 * (naive[1] - naive[0])
    assert ctl["ci95_high"] - ctl["ci95_low"] > 0.3  # image medians 0.7 ... 1.5


def test_false_positive_rate_stays_near_5_percent_with_clustered_nuclei() -> None:
    """200 experiments with no true difference, strong image-to-image variation and 30
    nuclei per image: the unit-level test rejects at p < 0.05 about 5 % of the time, while a
    test that takes nuclei as independent rejects most of the time."""
    from scipy import stats

    rng = np.random.default_rng(11)
    ours = naive = 0
    for k in range(200):
        data = _nuclei({"ctl": list(rng.normal(1, 0.3, 5)), "trt": list(rng.normal(1, 0.3, 5))},
                       per_image=30, seed=100 + k)
        p = permutation_p(*(unit_values(data, "condition").groupby("condition")["value"]
                            .apply(np.asarray)[c] for c in ("trt", "ctl")))[0]
        ours += p < 0.05
        by = data.groupby("condition")["lambda_median"]
        naive += stats.mannwhitneyu(by.get_group("trt"), by.get_group("ctl")).pvalue < 0.05
    assert ours / 200 <= 0.09, ours
    assert naive / 200 > 0.5, naive


def test_holm_on_a_hand_computed_example() -> None:
    # sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; each at least
    # the one before: 0.02, 0.03, 0.06, 0.06; back in the given order
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([np.nan, 0.02, 0.5, np.nan])  # NaN: no test, not counted (m = 2)
    assert np.isnan(got[[0, 3]]).all() and got[1:3] == pytest.approx([0.04, 0.5])
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]  # at most 1, never below the one before
    assert holm([0.2]).tolist() == [0.2] and holm([]).size == 0


def test_several_conditions_get_holm_adjusted_p_values_in_the_csv(tmp_path) -> None:
    rng = np.random.default_rng(5)
    data = _nuclei({"ctl": list(rng.normal(1, 0.1, 6)), "big": list(rng.normal(2, 0.1, 6)),
                    "none": list(rng.normal(1, 0.1, 6)), "some": list(rng.normal(1.15, 0.1, 6))})
    t = compare_conditions(data, "condition", reference="ctl")
    back = pd.read_csv(write_comparison(t, tmp_path, "condition"))
    cols = list(back.columns)
    assert cols[cols.index("p_value") + 1] == "p_holm"  # the raw p-value is kept beside it
    back = back.set_index("condition")
    assert np.isnan(back.loc["ctl", "p_value"]) and np.isnan(back.loc["ctl", "p_holm"])
    # exact permutation p-values (of C(12, 6) = 924 splits) and Holm's by hand: sorted
    # 2/924, 24/924, 544/924 times 3, 2, 1 = 6/924, 48/924, 544/924 (already increasing)
    assert back["p_value"].drop("ctl").to_numpy() * 924 == pytest.approx([2, 544, 24], rel=1e-5)
    assert back["p_holm"].drop("ctl").to_numpy() * 924 == pytest.approx([6, 544, 48], rel=1e-5)
    # "some" is below 0.05 on its own, not once three comparisons are accounted for
    assert back.loc["some", "p_value"] < 0.05 < back.loc["some", "p_holm"]


def test_replicates_as_units() -> None:
    data = _nuclei({"ctl": [1.0, 1.1, 1.2, 0.9, 1.0, 1.3], "trt": [2.0] * 6}, replicates=3)
    units = unit_values(data, "condition", unit="replicate")
    assert len(units) == 6 and set(units["n_images"]) == {2}
    t = compare_conditions(data, "condition", unit="replicate", reference="ctl")
    trt = _row(t, "trt")
    assert trt["unit"] == "replicate" and trt["n_units"] == 3 and trt["n_images"] == 6
    assert trt["p_min"] == pytest.approx(0.1) and trt["p_value"] == pytest.approx(0.1)
    assert "too few replicates" in trt["note"]
    with pytest.raises(ValueError, match="no column"):
        unit_values(data.drop(columns="replicate"), "condition", unit="replicate")


def test_one_image_has_no_interval_and_reference_must_exist() -> None:
    data = _nuclei({"ctl": [1.0], "trt": [2.0, 2.1]})
    t = compare_conditions(data, "condition")
    assert np.isnan(_row(t, "ctl")["ci95_low"]) and "no interval" in _row(t, "ctl")["note"]
    assert np.isnan(_row(t, "trt")["p_value"]) and "no test" in _row(t, "trt")["note"]
    with pytest.raises(ValueError, match="reference 'nope'"):
        compare_conditions(data, "condition", reference="nope")


def test_nan_nuclei_are_left_out_and_csv_is_rounded(tmp_path) -> None:
    data = _nuclei({"ctl": [1.0, 1.1], "trt": [2.0, 2.2]}, per_image=3)
    data.loc[0, "lambda_median"] = np.nan
    t = compare_conditions(data, "condition", order=["trt", "ctl"])
    assert list(t["condition"]) == ["trt", "ctl"] and t["reference"].iloc[0] == "trt"
    assert _row(t, "ctl")["n_nuclei"] == 5
    back = pd.read_csv(write_comparison(t, tmp_path, "condition"), dtype=str)
    numbers = back[["median_lambda", "ci95_low", "diff_vs_reference", "p_value"]].stack()
    assert numbers.str.len().max() <= 12, numbers  # 6 significant digits, not 17


# --- sample sheets -------------------------------------------------------------------------

def test_sheet_matching_names_missing_and_unknown(tmp_path) -> None:
    sheet_path = tmp_path / "sheet.csv"
    sheet_path.write_text("file,condition,replicate\nA.tif,ctl,01\nb,trt,02\ntypo.tif,trt,1\n")
    sheet = read_sample_sheet(sheet_path)
    assert list(sheet["replicate"]) == ["01", "02", "1"]  # text, not numbers
    with pytest.raises(InputError) as err:
        match_samples(sheet, ["in/A.tif", "in/b.ome.tif", "in/c.tif"], sheet_path)
    msg = str(err.value)
    assert "sheet.csv" in msg and "no row for 1 image(s): c.tif" in msg
    assert "1 row(s) name no input image: typo.tif" in msg
    match_samples(sheet.iloc[:2], ["in/A.tif", "in/b.ome.tif"], sheet_path)  # no error
    assert file_key("in/b.ome.tif") == "b"


@pytest.mark.parametrize("text, message", [
    ("name,condition\na.tif,ctl\n", "no 'file' column"),
    ("file,condition\na.tif,ctl\na,trt\n", "more than one row for image(s) a"),
    ("file,plane\na.tif,1\n", "clash"),
    ("file,condition\n,ctl\n", "empty 'file' cell on line(s) 2"),
])
def test_bad_sheets_are_refused_with_the_reason(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(InputError, match="s.csv") as err:
        read_sample_sheet(path)
    assert message in str(err.value)


def test_attach_samples_puts_sheet_columns_after_file(tmp_path) -> None:
    sheet_path = tmp_path / "sheet.csv"
    sheet_path.write_text("file,condition,replicate\na,ctl,1\nb.tif,trt,2\n")
    write_sample_sheet(read_sample_sheet(sheet_path), tmp_path)
    table = pd.DataFrame({"file": ["b.tif", "a.tif", "x.tif"], "plane": [0, 0, 0]})
    joined = attach_samples(table, tmp_path)
    assert list(joined.columns) == ["file", "condition", "replicate", "plane"]
    assert list(joined["condition"].fillna("")) == ["trt", "ctl", ""]
    assert attach_samples(table, tmp_path / "nowhere").equals(table)
