"""The calibration check (``pipeline.calibration_check``) on the stress suite's two-channel cases.

For each case the check runs on the image with (a) the calibration the suite gives a user
(with the case's deliberate scale error, if any), (b) the true calibration and (c, d) the true
calibration with the heterochromatin scale 20 % high or low (a ratio error of +20 % / -17 %).
A row says, per calibration, whether the image could judge it (``checked``), whether it was
called contradicted, the ratio the image prefers (relative to the one checked), the true
ratio error of the calibration checked, and r / rmse of λ against the truth (the fixed-bandwidth
closed form of ``benchmarks/calibration_identifiability.py``) with that calibration as given
and as ``--calibration-check fix`` leaves it. The foreground is found as ``chromarate run`` finds it
before the check (:func:`pipeline.calibration.background_level`).

    python benchmarks/calibration_check.py --seeds 11,23,37 > rows.jsonl   # tuning seeds
    python benchmarks/calibration_check.py --fit-path                      # test seeds

``--fit-path`` runs the two-channel calibration-error specs on the test seeds through the fit
``chromarate run`` uses (automatic bandwidth, std; :func:`benchmarks.stress.fit`), with the
calibration as given, as ``--calibration-check fix`` leaves it (the check on the central crop,
nuclei from :func:`pipeline.calibration.background_level`, as the run does) and the true one:
r / rmse / coverage of the 90 % interval on the stress evaluation region.

Every constant of the check was chosen on tuning seeds (docs/calibration.md has the seed log).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.calibration_identifiability import _region, _score, rows_main  # noqa: E402
from pipeline.calibration import background_level, corrected_calibration  # noqa: E402
from pipeline.calibration_check import check_calibration  # noqa: E402
from pipeline.config import Calibration  # noqa: E402
from pipeline.physics.chromatin import ChromatinModel  # noqa: E402
from pipeline.simulate.stress import make_stress_case  # noqa: E402

MODEL = ChromatinModel()
HET_ERRORS = {"het+20": 1.2, "het-17": 1 / 1.2}


def _ratio(cals, roles) -> float:
    ic, ih = roles.index("chromatin"), roles.index("heterochromatin")
    return cals[ih].scale / cals[ic].scale


def run_case(spec, seed: int) -> dict:
    t0 = time.perf_counter()
    case = make_stress_case(spec, seed)
    roles, img = tuple(case.channel_names), case.image.astype(float)
    ih = roles.index("heterochromatin")
    bg = background_level(img, case.pixel_size_um)
    fg = bg["foreground"] if bg else None
    truth = case.calibration
    tried = {"given": case.calibration_given, "true": truth}
    for name, f in HET_ERRORS.items():
        tried[name] = tuple(Calibration(offset=c.offset, scale=c.scale * (f if k == ih else 1))
                            for k, c in enumerate(truth))
    row = {"spec": spec.name, "seed": seed, "background": bg is not None}
    true_ratio = _ratio(truth, roles)
    region = _region(case)
    for name, cals in tried.items():
        t1 = time.perf_counter()
        out = check_calibration(img, roles, cals, case.pixel_size_um, MODEL, foreground=fg)
        row[name] = {"ratio_error": _ratio(cals, roles) / true_ratio - 1,
                     "checked": out["checked"], "contradicted": out["contradicted"],
                     "preferred_ratio": out["preferred_ratio"], "excess": out["excess"],
                     "contrast": out["contrast"], "unphysical": out["unphysical"],
                     "seconds": time.perf_counter() - t1}
        fixed = corrected_calibration(roles, cals, out) if out["contradicted"] else cals
        row[name] |= {"r_rmse": _score(img, roles, cals, case, region),
                      "r_rmse_fix": _score(img, roles, fixed, case, region)}
    row["seconds"] = time.perf_counter() - t0
    return row


def fit_path(specs=("cam_step_2ch_cal+-10", "cam_lognormal_2ch_cal+10"), seeds=None) -> None:
    """Print, per case, the check's verdict and r / rmse / coverage through the run's fit."""
    import dataclasses

    from benchmarks.stress import evaluation_region, fit, score
    from pipeline.estimate.bandwidth import central_crop
    from pipeline.self_calibration import CROP_PX
    from pipeline.simulate.stress import STRESS_SPECS, TEST_SEEDS

    for name in specs:
        spec = next(s for s in STRESS_SPECS if s.name == name)
        for seed in seeds or TEST_SEEDS:
            case = make_stress_case(spec, seed)
            roles = tuple(case.channel_names)
            data = central_crop(case.image.astype(float), CROP_PX)
            bg = background_level(data, case.pixel_size_um)
            fg = bg["foreground"] if bg else None
            given, true = case.calibration_given, case.calibration
            chk = check_calibration(data, roles, given, case.pixel_size_um, MODEL, foreground=fg)
            chk_true = check_calibration(data, roles, true, case.pixel_size_um, MODEL,
                                         foreground=fg)
            fixed = corrected_calibration(roles, given, chk) if chk["contradicted"] else given
            out = []
            for label, cal in (("given", given), ("fix", fixed), ("true", true)):
                m, sd, ok = fit(case.image, dataclasses.replace(case, calibration_given=cal),
                                "closed-form")
                sc = score(m.astype(float), sd.astype(float), ok, case.lam,
                           evaluation_region(case))
                out.append(f"{label} {sc['r']:.3f} / {sc['rmse']:.3f} / {sc['coverage']:.2f}")
            print(f"{name} seed {seed}: given contradicted {chk['contradicted']} (preferred "
                  f"ratio {chk['preferred_ratio']:.3f}), true contradicted "
                  f"{chk_true['contradicted']} | " + "; ".join(out), flush=True)


def main() -> None:
    if "--fit-path" in sys.argv[1:]:
        fit_path()
        return
    rows_main(run_case, __doc__.splitlines()[0], channels=2)


if __name__ == "__main__":
    main()
