"""What a misread noise level costs the closed form: every noise model scaled by a factor.

The bandwidth choice and the std take their noise from the per-channel noise models
(:func:`pipeline.estimate.bandwidth_split.noise_models`). Here those models are scaled in
amplitude by each ``--factors`` value (the spectrum by its square) before the choice and the
std see them, as a noise model that read the level too high or too low would, and each case
is fitted through the product's path (:func:`benchmarks.stress.run_case`, no best-fixed
sweep). Prints r, the chosen window (px) and the coverage of the 90 % interval per factor.

    python benchmarks/noise_level_sensitivity.py --seeds 11 --specs 'cam_smooth_1ch,storm_*'

Only tuning seeds are for choosing anything (docs/stress.md); the results are in
docs/bandwidth.md ("Limits").
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pipeline.estimate.bandwidth as bandwidth  # noqa: E402
import pipeline.estimate.fit as fit  # noqa: E402
from benchmarks.stress import run_case, seed_list  # noqa: E402
from pipeline.estimate.bandwidth_split import noise_models  # noqa: E402
from pipeline.estimate.noise import NoiseModel  # noqa: E402
from pipeline.simulate.stress import EXTRA_SPECS, STRESS_SPECS  # noqa: E402


def scaled_models(factor: float):
    """``noise_models`` with every model's amplitude times ``factor``."""

    def models(f, fg=None):
        f2 = factor**2
        return [NoiseModel.from_spectrum(m.a * f2, m.c, m.b * f2, f"{m.method}; x {factor:g}",
                                         a2=m.a2 * f2, c2=m.c2) for m in noise_models(f, fg)]

    return models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="11", help="'tuning', or comma-separated seeds")
    ap.add_argument("--specs", default="*", help="comma-separated name patterns (fnmatch); "
                    "the extra designs only by their full name")
    ap.add_argument("--factors", default="0.67,1,1.5,2")
    args = ap.parse_args(argv)
    factors = [float(x) for x in args.factors.split(",")]
    pats = args.specs.split(",")
    specs = [s for s in STRESS_SPECS if any(fnmatch.fnmatch(s.name, p) for p in pats)]
    specs += [s for s in EXTRA_SPECS if s.name in pats]
    for spec in specs:
        for seed in seed_list(args.seeds):
            cells = []
            for factor in factors:
                bandwidth.noise_models = fit.noise_models = scaled_models(factor)
                try:
                    row = run_case(spec, seed, "closed-form", False)
                finally:
                    bandwidth.noise_models = fit.noise_models = noise_models
                cells.append(f"x{factor:g}: r {row['r']:.3f}, s {row['window_px']:.1f} px, "
                             f"coverage {row['coverage']:.2f}")
            print(f"{spec.name} s{seed} | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
