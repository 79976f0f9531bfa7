"""Two channels that are not registered: how far λ moves, and what registering them recovers.

A two-colour image rarely has its channels on exactly the same pixels: chromatic aberration
and the two cameras' or paths' alignment leave offsets of 10–50 nm after correction, which
at 15–40 nm pixels is 0.25–2 px. chromarate reads λ from the two fields pixel by pixel
(``A = 2 phi_e`` and ``B`` mix both channels), so an offset mixes neighbouring structure.

Each two-channel design of the suite is drawn once; its heterochromatin channel is
shifted by ``--shifts`` pixels (along Y, by Fourier interpolation of the counts, which keeps
the noise's spectrum) and fitted as it comes, then with ``--channel-offset`` set to that
offset (what a bead measurement gives; :mod:`pipeline.registration`). Every fit is the
product's (:func:`benchmarks.stress.fit`), scored as the stress suite scores. Each row also
records the offset that phase correlation of the two channels finds on the sample itself
(:func:`skimage.registration.phase_cross_correlation`, 1/50 px), to show whether the sample
could stand in for beads.

No constant was chosen on these runs; they measure. Results: docs/your-own-images.md
("Two channels out of register").

    python benchmarks/registration.py --seeds tuning --out docs/stress_runs/registration_tuning.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stress import (  # noqa: E402
    add_case_arguments,
    evaluation_region,
    fit_scored,
    seed_list,
    write_rows,
)
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    make_stress_case,
)

SPECS = tuple(s.name for s in STRESS_SPECS if s.channels == 2 and s.calibration_error == (0.0,))
"""Every two-channel design of the suite without a deliberate calibration error (camera and
STORM, 0.015–0.04 µm pixels, nuclei in a dark background)."""


def shifted(plane: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``plane`` moved by ``shift`` (Y, X) pixels by Fourier interpolation (periodic)."""
    from scipy.ndimage import fourier_shift

    return np.fft.ifft2(fourier_shift(np.fft.fft2(np.asarray(plane, np.float64)), shift)).real


def as_counts(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def registration_shift(image: np.ndarray) -> np.ndarray:
    """The (Y, X) shift that registers channel 1 onto channel 0 (phase correlation)."""
    from skimage.registration import phase_cross_correlation

    est, _, _ = phase_cross_correlation(np.asarray(image[0], np.float64),
                                        np.asarray(image[1], np.float64),
                                        upsample_factor=50, normalization=None)
    return np.asarray(est, float)


def run(specs: tuple[str, ...], seeds: tuple[int, ...], shifts: tuple[float, ...]) -> list[dict]:
    by_name = {s.name: s for s in STRESS_SPECS}
    rows = []
    for name in specs:
        for seed in seeds:
            case = make_stress_case(by_name[name], seed)
            region = evaluation_region(case)
            for shift in shifts:
                moved = case.image.astype(np.float64)
                moved[1] = shifted(moved[1], (shift, 0.0))
                image = as_counts(moved)
                found = [-float(v) for v in registration_shift(moved)]
                offset_um = (shift * case.pixel_size_um, 0.0)
                for label, given in (("as recorded", None), ("--channel-offset", offset_um)):
                    if shift == 0 and given is not None:
                        continue
                    row = {"spec": name, "seed": seed, "shift_px": shift, "fit": label,
                           "found_shift_px": found}
                    row |= fit_scored(image, case, region, channel_offset_um=given)
                    rows.append(row)
                    print(f"{name} s{seed} shift {shift:g} px {label:>16}: r {row['r']:.3f} "
                          f"rmse {row['rmse']:.3f} coverage {row['coverage']:.2f} (phase "
                          f"correlation finds {found[0]:+.2f}, {found[1]:+.2f} px)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, SPECS)
    ap.add_argument("--shifts", default="0,0.25,0.5",
                    help="offsets of the heterochromatin channel, px (default: 0,0.25,0.5)")
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    rows = run(tuple(args.specs.split(",")), tuple(seeds),
               tuple(float(s) for s in args.shifts.split(",")))
    write_rows(args.out, seeds, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
