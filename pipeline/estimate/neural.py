"""Neural per-tile fit of ``lam``: a rate network and a mollified field, batched over tiles and
ensemble members, with a per-pixel mean and standard deviation (SCIENCE.md sections 4-5).

For each tile and member the fit starts from the closed-form estimate on that member's data
and minimises, by Adam, the noise-weighted data misfit of the mollified field plus the
normalised PDE residual (:mod:`.neural_model`). Members differ by antithetic noise
resampling: member pairs see ``y + z`` and ``y - z`` with ``z ~ N(0, sigma^2)`` at the
estimated noise level, so their spread measures how the estimate moves with the noise, and
their mean cancels ``z`` to first order. All ``tiles x members`` problems are one batch: one
mollifier pass and one Adam step per epoch for all of them.

What it measured against the closed-form estimator, and why the default method stays
closed-form, is in docs/neural.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import EstimatorSettings, NeuralSettings, Settings
from ..device import resolve_device
from ..mollifier import Mollifier
from ..physics.base import LinearResidualModel
from .bandwidth import estimate_noise, select_bandwidth
from .closed_form import LinearTerms, identifiable_mask, linear_terms, local_least_squares
from .neural_model import BatchedFit, RateGrid, grid_shape, logit_init

__all__ = [
    "fit_tiles", "fit_image", "calibration_fraction", "member_data", "jitter_factors",
    "smoothing_bias",
]

log = logging.getLogger(__name__)


def member_data(
    fields: np.ndarray, sigma: np.ndarray, n_members: int, seed: int, *, resample: bool = True
) -> np.ndarray:
    """Antithetic noise-resampled copies ``(E, C, H, W)`` of one tile's ``(C, H, W)`` fields.

    Members ``2k`` and ``2k + 1`` are ``y + z_k`` and ``y - z_k`` with
    ``z_k ~ N(0, sigma_c^2)``, drawn from ``numpy.random.default_rng(seed)``.

    >>> m = member_data(np.zeros((1, 4, 4)), np.array([0.1]), 2, 0)
    >>> m.shape, bool(np.allclose(m.mean(axis=0), 0.0))
    ((2, 1, 4, 4), True)
    """
    y = np.asarray(fields, dtype=np.float64)
    if not resample:
        return np.repeat(y[None], n_members, axis=0)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_members // 2,) + y.shape) * np.asarray(sigma)[None, :, None, None]
    return np.stack([y + s * zk for zk in z for s in (1.0, -1.0)])


def jitter_factors(n_pairs: int, jitter: float) -> np.ndarray:
    """Bandwidth factors of the member pairs: geometric from ``1/jitter`` to ``jitter``.

    >>> jitter_factors(2, 1.4).round(3).tolist()
    [0.714, 1.4]
    """
    if n_pairs == 1 or jitter == 1.0:
        return np.ones(n_pairs)
    return jitter ** np.linspace(-1.0, 1.0, n_pairs)


def smoothing_bias(
    fields: np.ndarray, model, pixel_size_um: float, delta_um: float, window_um: float,
    factor: float, est: EstimatorSettings,
) -> np.ndarray:
    """Per-pixel size of the smoothing bias of the closed-form map at ``(delta, s)``, for
    ``(N, C, H, W)`` fields: ``|lam(j delta, j s) - lam(delta / j, s / j)| / (j^2 - j^-2)``.

    The bias of a smoothing at scale ``s`` grows as ``s^2`` (``b(s) ~ c s^2``), so the maps at
    ``j s`` and ``s / j`` differ by ``c s^2 (j^2 - j^-2)``, the bias at ``s`` times
    ``j^2 - j^-2``. The difference also carries noise, which only widens the interval. Where
    either map is undefined the term is 0. ``factor`` 1 gives zeros.

    >>> from pipeline.physics import ChromatinModel
    >>> f = np.stack([np.full((1, 32, 32), 0.35), np.full((1, 32, 32), 0.3)], axis=1)
    >>> b = smoothing_bias(f, ChromatinModel(), 0.02, 0.08, 0.08, 1.2, EstimatorSettings())
    >>> b.shape, float(np.abs(b).max()) < 1e-6
    ((1, 32, 32), True)
    """
    f = np.asarray(fields, dtype=np.float64)
    if factor == 1.0:
        return np.zeros((f.shape[0],) + f.shape[-2:])
    wide, _ = _closed_form_scaled(f, model, pixel_size_um, delta_um, window_um, factor, est)
    narrow, _ = _closed_form_scaled(f, model, pixel_size_um, delta_um, window_um, 1 / factor, est)
    return np.nan_to_num(np.abs(wide - narrow)) / (factor**2 - factor**-2)


def _closed_form_scaled(fields: np.ndarray, model, px: float, delta_um: float, window_um: float,
                        factor: float, est: EstimatorSettings) -> tuple[np.ndarray, LinearTerms]:
    """The closed-form ``lam`` and terms of ``(N, C, H, W)`` fields at ``(delta, s)`` times
    ``factor`` (the radius kept at least 1.5 px)."""
    terms = linear_terms(fields, model, max(delta_um * factor, 1.5 * px), px, backend=est.backend)
    lam, _ = local_least_squares(terms, window_um * factor, px, lambda_min=est.lambda_min,
                                 lambda_max=est.lambda_max)
    return lam, terms


def _bandwidth(fields: np.ndarray, model, px: float, est: EstimatorSettings, seed: int):
    if est.delta_um != "auto" and est.window_um != "auto":
        return float(est.delta_um), float(est.window_um), {"criterion": "fixed by the user"}
    kwargs = {}
    if est.delta_um != "auto":
        kwargs["deltas_px"] = (float(est.delta_um) / px,)
    if est.window_um != "auto":
        kwargs["windows_px"] = (float(est.window_um) / px,)
    tile = fields[len(fields) // 2]  # the central tile of the batch stands for all
    choice = select_bandwidth(tile, model, px, seed=seed, backend=est.backend,
                              lambda_min=est.lambda_min, lambda_max=est.lambda_max, **kwargs)
    sel = choice.to_dict()
    sel.pop("table", None)
    return choice.delta_um, choice.window_um, sel


def _unpack(settings) -> tuple[NeuralSettings, EstimatorSettings]:
    if settings is None:
        return NeuralSettings(), EstimatorSettings()
    if isinstance(settings, Settings):
        return settings.neural, settings.estimator
    if isinstance(settings, tuple):
        return settings
    raise TypeError(f"settings must be Settings or (NeuralSettings, EstimatorSettings), got {settings!r}")


def fit_tiles(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    settings: Settings | tuple[NeuralSettings, EstimatorSettings] | None = None,
    *,
    init_lambda: np.ndarray | None = None,
    bandwidth: tuple[float, float] | None = None,
    seed: int | Sequence[int] = 0,
    device: str | None = "auto",
    dtype: str = "float32",
    progress: Callable[[dict], None] | None = None,
    mask: bool = True,
) -> dict[str, Any]:
    """Fit ``lam`` on ``N`` tiles at once, with an ensemble per tile.

    Parameters
    ----------
    fields
        ``(N, C, H, W)`` fields per tile in the model's channel order, halo included (the
        caller keeps the interior).
    model
        The residual model (e.g. :class:`~pipeline.physics.ChromatinModel`).
    pixel_size_um
        Grid spacing in micrometres.
    settings
        :class:`~pipeline.config.Settings` (its ``neural`` and ``estimator`` parts are used)
        or a ``(NeuralSettings, EstimatorSettings)`` pair.
    init_lambda
        ``(N, H, W)`` closed-form estimate to start from (NaN allowed); computed per tile
        when omitted. Each member starts from it plus its own closed-form deviation.
    bandwidth
        ``(delta_um, window_um)``; by default the estimator's fixed values, else chosen by
        :func:`~pipeline.estimate.select_bandwidth` on the central tile (pass the image's
        choice when fitting tiles of one image).
    seed
        One seed per tile, or an int ``s`` meaning ``s + n`` for tile ``n``. A tile's result
        depends only on its fields and its seed, not on the batch it is fitted in.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    dtype
        ``"float32"`` (default) or ``"float64"``. No mixed precision: fourth derivatives by
        FFT lose their accuracy in half precision.
    progress
        Called once per epoch with ``{"stage": "neural", "done", "total"}``.
    mask
        NaN outside each tile's own identifiability mask (the default). A caller that masks
        with its own (:func:`pipeline.tiling.fit_plane` uses the plane's, whose thresholds
        are the plane's medians, not the tile's) passes ``False`` and gets finite values
        everywhere, so a pixel the plane calls identifiable is never lost to a tile's
        stricter threshold.

    Returns
    -------
    dict
        ``mean``, ``std`` ``(N, H, W)`` float32 (NaN where not identifiable), ``identifiable``
        ``(N, H, W)`` bool, ``diagnostics``: one dict per tile (final data and residual terms,
        ``diverged``, ``epochs``, bandwidths, noise). A tile ``diverged`` when any member's
        loss turned non-finite (that member is then dropped from the loss, the others train
        on), its final residual exceeds 10x its start, or its λ holds a non-finite value;
        :func:`pipeline.tiling.fit_plane` retries such tiles and flags them.

    Examples
    --------
    >>> from pipeline.physics import ChromatinModel
    >>> f = np.stack([np.full((1, 32, 32), 0.35), np.full((1, 32, 32), 0.3)], axis=1)
    >>> s = (NeuralSettings(epochs=2), EstimatorSettings(delta_um=0.06, window_um=0.06))
    >>> out = fit_tiles(f, ChromatinModel(), 0.02, s, device="cpu")
    >>> out["mean"].shape, round(float(np.nanmedian(out["mean"])), 2)
    ((1, 32, 32), 1.0)
    """
    import torch

    t_start = time.perf_counter()
    nn_s, est = _unpack(settings)
    f = np.asarray(fields, dtype=np.float64)
    if f.ndim != 4:
        raise ValueError(f"fields must be (N, C, H, W), got shape {f.shape}")
    n_tiles, n_ch, h, w = f.shape
    seeds = [int(seed) + i for i in range(n_tiles)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
    if len(seeds) != n_tiles:
        raise ValueError(f"{len(seeds)} seeds given for {n_tiles} tiles")
    if bandwidth is None:
        delta, window, selection = _bandwidth(f, model, pixel_size_um, est, seeds[len(f) // 2])
    else:
        delta, window = map(float, bandwidth)
        selection = {"criterion": "given by the caller"}
    e = nn_s.ensemble_size
    lo, hi = est.lambda_min, est.lambda_max

    sigma = np.stack([estimate_noise(t) for t in f])  # (N, C)
    y = np.stack([member_data(f[i], sigma[i], e, seeds[i], resample=nn_s.resample_noise)
                  for i in range(n_tiles)])  # (N, E, C, H, W)

    # closed-form start of every member (pair k at bandwidth factor f_k), identifiability
    factors = jitter_factors(e // 2, nn_s.bandwidth_jitter)
    lam_members = np.empty((n_tiles, e, h, w))
    a_mem, b_mem = np.empty((n_tiles, e, h, w)), np.empty((n_tiles, e, h, w))
    for k, fk in enumerate(factors):
        pair = slice(2 * k, 2 * k + 2)
        lk, tk = _closed_form_scaled(y[:, pair].reshape(-1, n_ch, h, w), model, pixel_size_um,
                                     delta, window, fk, est)
        lam_members[:, pair] = lk.reshape(n_tiles, 2, h, w)
        a_mem[:, pair] = tk.a.reshape(n_tiles, 2, h, w)
        b_mem[:, pair] = tk.b.reshape(n_tiles, 2, h, w)
    t_obs = linear_terms(f, model, delta, pixel_size_um, backend=est.backend)
    lam_obs, den = local_least_squares(t_obs, window, pixel_size_um, lambda_min=lo, lambda_max=hi)
    bias = smoothing_bias(f, model, pixel_size_um, delta, window, nn_s.bias_factor, est)
    ident = np.stack([
        identifiable_mask(LinearTerms(t_obs.a[i], t_obs.b[i], t_obs.weight, delta, t_obs.support_px),
                          den[i], fraction=est.identifiable_fraction) & np.isfinite(lam_obs[i])
        for i in range(n_tiles)
    ])
    if init_lambda is not None:
        init = np.asarray(init_lambda, dtype=np.float64)
        if init.shape != (n_tiles, h, w):
            raise ValueError(f"init_lambda must be {(n_tiles, h, w)}, got {init.shape}")
        lam_members = init[:, None] + (lam_members - np.nanmean(lam_members, axis=1, keepdims=True))

    dev = resolve_device(device)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    gshape = grid_shape((h, w), nn_s.rate_spacing * window / pixel_size_um)
    theta0 = logit_init(lam_members, gshape, lo, hi).reshape(n_tiles * e, 1, *gshape)

    def T(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=tdtype, device=dev)

    fit = BatchedFit(
        model=model,
        mollifier=Mollifier(delta, pixel_size_um, model.derivatives, backend=est.backend),
        rate=RateGrid(lo, hi, (h, w)),
        y=T(y.reshape(n_tiles * e, n_ch, h, w)),
        sigma=T(np.repeat(sigma, e, axis=0)),
        theta0=T(theta0),
        learn_field=nn_s.field_network == "grid",
        residual_weight=nn_s.residual_weight,
        ab0=(T(a_mem.reshape(-1, h, w)), T(b_mem.reshape(-1, h, w))),
    )
    opt = torch.optim.Adam(fit.parameters(nn_s.lr_rate, nn_s.lr_field))
    diverged = np.zeros(n_tiles * e, dtype=bool)
    alive = torch.ones(n_tiles * e, dtype=torch.bool, device=dev)
    epochs_done = 0
    for epoch in range(nn_s.epochs):
        opt.zero_grad(set_to_none=True)
        _, data, res, _ = fit.loss()
        per = data + fit.residual_weight * res
        finite = torch.isfinite(per)
        if not bool(finite[alive].all()):
            # a member whose loss is non-finite is flagged and dropped from the loss; members
            # never mix, so the others train on as if it were not in the batch
            diverged |= (alive & ~finite).cpu().numpy()
            alive &= finite
            log.warning("neural fit: non-finite loss at epoch %d in %d of %d members", epoch,
                        int(diverged.sum()), diverged.size)
            if not bool(alive.any()):
                break
        total = torch.where(alive, per, torch.zeros_like(per)).sum()
        total.backward()
        opt.step()
        epochs_done = epoch + 1
        if progress is not None:
            progress({"stage": "neural", "done": epochs_done, "total": nn_s.epochs})
    with torch.no_grad():
        data, res, lam = fit.terms()
    lam = lam.cpu().numpy().astype(np.float64).reshape(n_tiles, e, h, w)
    data = data.cpu().numpy().reshape(n_tiles, e)
    res = res.cpu().numpy().reshape(n_tiles, e)
    diverged = (diverged.reshape(n_tiles, e) | ~np.isfinite(res) | (res > 10.0)
                | ~np.isfinite(lam).all(axis=(-2, -1)))

    mean = lam.mean(axis=1)
    # the members' spread measures the noise; the bias term, the smoothing they share
    std = np.hypot(lam.std(axis=1, ddof=1) * nn_s.std_scale, bias)
    keep = ident if mask else np.ones_like(ident)
    mean = np.where(keep, mean, np.nan).astype(np.float32)
    std = np.where(keep, std, np.nan).astype(np.float32)
    elapsed = time.perf_counter() - t_start
    diagnostics = [
        {
            "data": float(np.mean(data[i])),
            "residual": float(np.mean(res[i])),
            "residual_start": 1.0,
            "diverged": bool(diverged[i].any()),
            "epochs": epochs_done,
            "members": e,
            "delta_um": float(delta),
            "window_um": float(window),
            "rate_grid": list(gshape),
            "noise_sigma": [float(s) for s in sigma[i]],
            "field_network": nn_s.field_network,
            "bandwidth_factors": [float(x) for x in factors],
            "selection": selection,
            "device": str(dev),
            "seconds_batch": elapsed,
        }
        for i in range(n_tiles)
    ]
    log.info("neural fit: %d tiles x %d members, %d epochs on %s in %.1f s", n_tiles, e,
             epochs_done, dev, elapsed)
    return {"mean": mean, "std": std, "identifiable": ident, "diagnostics": diagnostics}


def fit_image(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    settings: Settings | tuple[NeuralSettings, EstimatorSettings] | None = None,
    *,
    seed: int = 0,
    device: str | None = "auto",
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Fit one whole ``(C, H, W)`` plane as a single tile; returns :func:`fit_tiles`' dict with
    ``(H, W)`` maps and one diagnostics dict.

    Bandwidths set to ``"auto"`` are chosen on a central crop of at most 512 px a side, as
    the closed-form estimator does.
    """
    f = np.asarray(fields, dtype=np.float64)
    _, est = _unpack(settings)
    h, w = f.shape[-2:]
    y0, x0 = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
    crop = f[None, :, y0 : y0 + 512, x0 : x0 + 512]
    delta, window, selection = _bandwidth(crop, model, pixel_size_um, est, seed)
    out = fit_tiles(f[None], model, pixel_size_um, settings, bandwidth=(delta, window),
                    seed=[seed], device=device, progress=progress)
    out["diagnostics"][0]["selection"] = selection
    return {k: (v[0] if k != "diagnostics" else v[0]) for k, v in out.items()}


def calibration_fraction(
    mean: np.ndarray, std: np.ndarray, truth: np.ndarray, identifiable: np.ndarray,
    *, border_px: int = 16, z: float = 1.645,
) -> float:
    """Fraction of identifiable interior pixels with ``|truth - mean| <= z * std`` (the
    nominal 90 % interval; target 0.85-0.95).

    >>> calibration_fraction(np.zeros((40, 40)), np.ones((40, 40)), np.zeros((40, 40)),
    ...                      np.ones((40, 40), bool), border_px=4)
    1.0
    """
    ok = np.asarray(identifiable, bool) & np.isfinite(mean) & np.isfinite(std)
    ok = ok.copy()
    b = border_px
    ok[:b] = ok[-b:] = False
    ok[:, :b] = ok[:, -b:] = False
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(truth[ok] - mean[ok]) <= z * std[ok]))
