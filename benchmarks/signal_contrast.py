"""Where the ``no-signal`` threshold sits: :func:`pipeline.plane_qc.signal_contrast` on every
stress case (its channels) at the tuning seeds, and on planes of noise only (white Gaussian and
Poisson, 128-1024 px, pixels 0.015-0.2 µm). ``NO_SIGNAL_CONTRAST`` must lie between the noise
planes' largest value and the cases' smallest (docs/your-own-images.md, QC flags).

    python benchmarks/signal_contrast.py

Only tuning seeds are read (docs/stress.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.config import SegmentSettings  # noqa: E402
from pipeline.plane_qc import NO_SIGNAL_CONTRAST, signal_contrast  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, TUNING_SEEDS, make_stress_case  # noqa: E402

SMOOTH_UM = SegmentSettings().smooth_um


def main() -> None:
    cases = []
    for spec in STRESS_SPECS:
        for seed in TUNING_SEEDS:
            case = make_stress_case(spec, seed)
            values = [signal_contrast(ch, case.pixel_size_um, SMOOTH_UM) for ch in case.image]
            cases.append((min(values), case.name))
            print(f"{case.name:40s} " + " ".join(f"{v:8.1f}" for v in values), flush=True)
    rng = np.random.default_rng(5)
    noise = []
    for px in (0.015, 0.02, 0.03, 0.04, 0.06, 0.1, 0.2):
        for n in (128, 256, 1024):
            planes = [100 + 5 * rng.standard_normal((n, n)) for _ in range(3)]
            planes += [rng.poisson(20, (n, n)).astype(float) for _ in range(2)]
            values = [signal_contrast(p, px, SMOOTH_UM) for p in planes]
            noise.extend(values)
            print(f"noise {px:5.3f} um {n:5d} px " + " ".join(f"{v:5.1f}" for v in values))
    low = sorted(cases)[:3]
    print(f"noise planes: {min(noise):.1f}-{max(noise):.1f}; stress cases from "
          f"{low[0][0]:.1f} ({', '.join(f'{n} {v:.1f}' for v, n in low)}); "
          f"threshold {NO_SIGNAL_CONTRAST:g}")


if __name__ == "__main__":
    main()
