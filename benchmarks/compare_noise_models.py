"""Do two versions of the code fit the same noise models on the stress suite?

A change to the noise model that should touch only images outside the suite (for example the
binned fit of renderings wider than the band, docs/bandwidth.md) is checked here model by
model, without reading any accuracy: each source tree (a checkout or ``git worktree`` of a
commit) fits the noise models of every design at every seed, as the bandwidth choice does
(``noise_models``, on the fields of the pairs a user would pass, over the whole field and
inside the nuclei the run finds), and the two are compared exactly. ``--control`` names an
extra design (``EXTRA_SPECS`` of AFTER) that must differ, so that two imports of the same
code cannot pass for a check.

    python benchmarks/compare_noise_models.py /path/to/before /path/to/after \\
        --seeds 11,23,37,8942,7753,2685 --control storm_smooth_1ch_px10
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any


def models(root: str, seeds: list[int], extra: list[dict[str, Any]]) -> dict:
    """Every noise model of the suite (and of the ``extra`` spec dicts) with ``root``'s code."""
    for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    try:
        import pipeline.estimate.noise as noise
        from pipeline.config import Settings
        from pipeline.estimate.bandwidth_split import noise_models
        from pipeline.physics.observation import to_fields
        from pipeline.process import nuclei_foreground
        from pipeline.simulate import stress

        print(f"{root}: {noise.__file__}", flush=True)
        out = {}
        known = set(stress.StressSpec.__dataclass_fields__)
        # a field the older code lacks must be at its default (a new dimension, unused)
        extra_specs = [stress.StressSpec.from_dict({k: v for k, v in d.items() if k in known})
                       for d in extra]
        for spec in [*stress.STRESS_SPECS, *extra_specs]:
            for seed in seeds:
                case = stress.make_stress_case(spec, seed)
                f, _ = to_fields(case.image, case.channel_names, case.calibration_given,
                                 clip=False)
                fg = nuclei_foreground(f, case.pixel_size_um, Settings())
                for where, mask in (("whole field", None), ("nuclei", fg)):
                    out[(spec.name, seed, where)] = [
                        (m.a, m.c, m.b, m.a2, m.c2, m.method) for m in noise_models(f, mask)]
        return out
    finally:
        sys.path.remove(root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--seeds", default="11,23,37")
    ap.add_argument("--control", default=None, help="an EXTRA_SPECS design of AFTER that the "
                    "change must alter")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    extra: list[dict[str, Any]] = []
    if args.control:
        sys.path.insert(0, args.after)
        from pipeline.simulate.stress import EXTRA_SPECS

        extra = [asdict(s) for s in EXTRA_SPECS if s.name == args.control]
        sys.path.remove(args.after)
        if not extra:
            ap.error(f"no extra design {args.control!r} in {args.after}")
    before = models(args.before, seeds, extra)
    after = models(args.after, seeds, extra)
    differ = sorted(k for k in before if before[k] != after[k])
    control = [k for k in differ if k[0] == args.control]
    suite = [k for k in differ if k[0] != args.control]
    n_suite = sum(k[0] != args.control for k in before)
    print(f"suite: {n_suite} models, {len(suite)} differ" + "".join(
        f"\n  differs: {k}" for k in suite))
    if args.control:
        n_ctl = len(before) - n_suite
        print(f"control {args.control}: {len(control)} of {n_ctl} models differ (must be all)")
        if len(control) != n_ctl:
            return 1
    return 1 if suite else 0


if __name__ == "__main__":
    raise SystemExit(main())
