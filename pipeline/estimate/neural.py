"""The neural per-tile fit: the paper's mollified field network and rate network, trained jointly.

For each tile, ``E + 1`` problems are fitted in one batch with every other tile's: member 0 on
the data ``y``, members ``1..E`` on antithetic noise-resampled copies ``y +- z_k``
(:func:`~pipeline.estimate.uncertainty.member_data`). Each problem has its own
:class:`~.networks.FieldNet` ``g`` and :class:`~.networks.RateNet` ``lam`` and minimises

``loss = D + w R``, with
``D = mean_c,x (g - y)^2 / sigma_c^2`` (the misfit to the raw data, in noise units; members
see the noise variance twice) and
``R = mean_x (A(g) lam - B(g))^2 / R_0`` (the PDE residual of the mollified field, the
mollifier layer inside the training graph; ``R_0`` its value at the start of the joint phase).

1. **Warm start.** The field is pretrained on ``D`` alone, and the rate on the closed-form
   lambda of its member's data (masked where that is undefined).
2. **Joint fit, residual weight by the discrepancy principle.** ``w`` starts at 0.1 and is
   raised by 10 % every epoch while ``D`` is below a target and lowered by 10 % while it is
   above. The target is the pretrained misfit plus ``misfit_increase`` (0 by default): the
   field may move towards a state the PDE explains with a smooth lambda only as far as it
   does not fit the data worse than its capacity-limited fit did. Measured on tuning cases
   (docs/neural.md): larger allowances let the field absorb the residual and cost accuracy.
   The weight never falls below ``residual_weight_floor`` (0.01): a misfit a hair above its
   target, within its own noise, would otherwise lower it every epoch until the PDE no longer
   constrains lambda.

The estimate is the ensemble's mean: the average of the ``E + 1`` problems' lambda (member 0's
and the members'). Every problem is one training of the networks from its own initialisation
on data with the same signal, and the average of several trainings is less noisy than any one
(a deep ensemble's prediction). The std is that of one training, as before: the members'
spread about member 0, member 0's noise bias and the smoothing bias (:mod:`.uncertainty`).
What it measured against the closed form is in docs/neural.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..device import resolve_device
from ..mollifier import Mollifier
from ..physics.base import LinearResidualModel, prepare
from .networks import FieldNet, RateNet
from .uncertainty import (
    FieldNoise,
    closed_form_scaled,
    combine_std,
    member_data,
    smoothing_bias,
    unbounded,
)

__all__ = ["fit_tiles", "fit_tiles_guarded"]

log = logging.getLogger(__name__)

W_START, W_STEP = 0.1, 1.1


def _member_seeds(seeds: Sequence[int], e1: int) -> list[int]:
    """One seed per (tile, member) from the tile's seed: independent of the batch."""
    return [int(s) * 1009 + k for s in seeds for k in range(e1)]


def fit_tiles(
    tiles: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    settings: Any,
    *,
    init_lambda: np.ndarray,
    bandwidth: tuple[float, float],
    noise: FieldNoise,
    seeds: Sequence[int],
    weight: np.ndarray | None = None,
    device: str | None = "auto",
    dtype: str = "float32",
    joint_lr_factor: float = 1.0,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Fit ``lam`` on ``N`` tiles ``(N, C, H, W)`` at once, with an ensemble per tile.

    Parameters
    ----------
    tiles
        Fields per tile in the model's channel order, halo included.
    settings
        :class:`~pipeline.config.Settings` (its ``neural``, ``uncertainty`` and ``estimator``
        parts are used).
    init_lambda
        ``(N, H, W)`` closed-form estimate on the data (NaN allowed): the fallback of a tile
        that diverges, and the start of member 0.
    bandwidth
        ``(delta_um, window_um)`` of the plane.
    noise
        The plane's noise model (the members' resampling and the misfit's units).
    seeds
        One per tile; a tile's result depends only on its fields and its seed.
    weight
        ``(N, H, W)`` weight of each pixel in the residual and the closed-form starts (the
        nuclei away from their edges); None: all pixels.
    dtype
        ``"float32"`` (default) or ``"float64"``. No mixed precision: fourth derivatives by FFT
        lose their accuracy in half precision.
    joint_lr_factor
        The joint phase's step is ``neural.lr`` times this (the retry of a diverged tile: a
        smaller step where the fit diverged, while the pretraining keeps its own step and so
        brings the field as close to the data as a first attempt does).

    Returns
    -------
    dict
        ``mean``, ``std`` ``(N, H, W)`` float64; ``diagnostics``, one dict per tile: the data
        misfit and residual at the start of the joint phase and at the end, the final
        residual weight, the mean change of lambda from its closed-form start, ``diverged``.
    """
    import torch

    t0 = time.perf_counter()
    nn_s, unc, est = settings.neural, settings.uncertainty, settings.estimator
    f = np.asarray(tiles, dtype=np.float64)
    if f.ndim != 4:
        raise ValueError(f"tiles must be (N, C, H, W), got shape {f.shape}")
    n, c, h, w = f.shape
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds given for {n} tiles")
    delta, window = map(float, bandwidth)
    e1 = unc.ensemble_size + 1
    lo, hi = est.lambda_min, est.lambda_max

    y = np.stack([np.concatenate([f[i][None], member_data(f[i], noise, e1 - 1, int(seeds[i]))])
                  for i in range(n)]).reshape(n * e1, c, h, w)
    # the closed-form start of every member (member 0: the caller's estimate on the data)
    start = np.empty((n, e1, h, w))
    start[:, 0] = init_lambda
    rest = closed_form_scaled(y.reshape(n, e1, c, h, w)[:, 1:].reshape(-1, c, h, w), model,
                              pixel_size_um, delta, window, 1.0, est,
                              weight=None if weight is None else np.repeat(weight, e1 - 1, 0))
    start[:, 1:] = rest.reshape(n, e1 - 1, h, w)
    start = start.reshape(n * e1, h, w)

    dev = resolve_device(device)
    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]

    def T(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=tdt, device=dev)

    sig = np.tile(np.asarray(noise.sigma, np.float64), (n, e1, 1))
    sig[:, 1:] *= np.sqrt(2.0)  # y + z carries the noise twice
    sig = T(sig.reshape(n * e1, c))
    learned = sig > 0
    y_t = T(y)
    target_ok = np.isfinite(start)
    tgt = T(np.where(target_ok, start, 0.0))
    tgt_w = T(target_ok.astype(np.float64))
    mseeds = _member_seeds(seeds, e1)

    field = FieldNet(y_t, nn_s.field_spacing * delta / pixel_size_um, mseeds,
                     features=nn_s.field_features, hidden=nn_s.hidden)
    rate = RateNet([s + 7 for s in mseeds], (h, w), pixel_size_um,
                   nn_s.rate_spacing * window, lo, hi, frequencies=nn_s.rate_frequencies,
                   hidden=nn_s.hidden, dtype=tdt, device=dev)
    level = np.array([np.median(s[np.isfinite(s)]) if np.isfinite(s).any() else 0.5 * (lo + hi)
                      for s in start])
    rate.set_level(T(level))
    layer = Mollifier(delta, pixel_size_um, model.derivatives, backend=est.backend)
    b = layer.support_px
    border = torch.zeros(h, w, dtype=tdt, device=dev)
    if 2 * b < min(h, w):
        border[b : h - b, b : w - b] = 1.0
    else:
        border[:] = 1.0
    if weight is not None:  # (B, H, W): each problem its own tile's weight
        border = border * T(np.repeat(np.asarray(weight, np.float64), e1, axis=0))
    n_learned = learned.sum(dim=1).clamp_min(1)
    safe_sig = torch.where(learned, sig, torch.ones_like(sig))

    def misfit():
        """The field on the pixel grid and its misfit to the data, in noise units."""
        g = torch.where(learned[..., None, None], field(), y_t)
        z = torch.where(learned[..., None, None], (g - y_t) / safe_sig[..., None, None],
                        torch.zeros_like(g))
        return g, (z**2).mean(dim=(-2, -1)).sum(dim=1) / n_learned

    def wmean(x, w):
        """Per-problem mean of ``x`` ``(B, H, W)`` weighted by ``w``."""
        return (x * w).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1)

    def evaluate():
        g, data = misfit()
        maps = layer(prepare(model, g))
        a, bb = model.linear_terms(maps)
        lam = rate()
        res = ((border * (a * lam - bb) ** 2).sum(dim=(-2, -1))
               / border.sum(dim=(-2, -1)).clamp_min(1.0))
        return data, res, lam

    params = field.parameters() + rate.parameters()
    # the skip grid holds field values: its step is a fraction of the noise, not of a weight
    step_skip = float(nn_s.lr) * 0.2
    opt = torch.optim.Adam([{"params": params[:1], "lr": step_skip},
                            {"params": params[1:], "lr": nn_s.lr}])
    alive = torch.ones(n * e1, dtype=torch.bool, device=dev)
    total_epochs = nn_s.pretrain_epochs + nn_s.epochs
    tvar = wmean((tgt - wmean(tgt, tgt_w)[:, None, None]) ** 2, tgt_w).clamp_min(1e-6)

    def step(loss_per, epoch):
        nonlocal alive
        finite = torch.isfinite(loss_per)
        if not bool(finite[alive].all()):
            alive = alive & finite
            log.warning("neural fit: non-finite loss at epoch %d in %d of %d problems", epoch,
                        int((~alive).sum()), alive.numel())
        opt.zero_grad(set_to_none=True)
        torch.where(alive, loss_per, torch.zeros_like(loss_per)).sum().backward()
        for p in params:  # a dead problem's parameters never move again
            if p.grad is not None:
                p.grad[~alive] = 0.0
        opt.step()
        if progress is not None:
            progress({"stage": "neural", "done": epoch + 1, "total": total_epochs})

    for epoch in range(nn_s.pretrain_epochs):  # field to the data, rate to the closed form
        _, data = misfit()
        step(data + wmean((rate() - tgt) ** 2, tgt_w) / tvar, epoch)

    for group in opt.param_groups:
        group["lr"] *= float(joint_lr_factor)
    with torch.no_grad():
        data0, res0, lam0 = evaluate()
    r0 = res0.clamp_min(1e-30)
    target = data0 + nn_s.misfit_increase
    w_res = torch.full_like(data0, W_START)
    for epoch in range(nn_s.epochs):
        data, res, _ = evaluate()
        step(data + w_res * res / r0, nn_s.pretrain_epochs + epoch)
        with torch.no_grad():
            w_res = torch.where(data.detach() < target, w_res * W_STEP,
                                w_res / W_STEP).clamp_min(nn_s.residual_weight_floor)
    with torch.no_grad():
        data1, res1, lam1 = evaluate()

    lam = lam1.cpu().numpy().astype(np.float64).reshape(n, e1, h, w)
    res_ratio = (res1 / r0).cpu().numpy().reshape(n, e1)
    bad = (~alive.cpu().numpy().reshape(n, e1) | ~np.isfinite(res_ratio) | (res_ratio > 10.0)
           | ~np.isfinite(lam).all(axis=(-2, -1)))
    bias = smoothing_bias(f, model, pixel_size_um, delta, window, unc.bias_factor,
                          unbounded(est), weight=weight)
    # the std of one training (the members' spread about member 0, member 0's noise bias);
    # the estimate, the average of all E + 1 trainings
    std = combine_std(lam[:, 1:], lam[:, 0], bias, noise_bias=unc.noise_bias,
                      smooth_px=unc.variance_smoothing * window / pixel_size_um)
    mean = lam.mean(axis=1)
    lam0 = lam0.cpu().numpy().reshape(n, e1, h, w)[:, 0]
    d0, d1 = (x.cpu().numpy().reshape(n, e1)[:, 0] for x in (data0, data1))
    rr = res_ratio[:, 0]
    wf = w_res.cpu().numpy().reshape(n, e1)[:, 0]
    elapsed = time.perf_counter() - t0
    diagnostics = []
    for i in range(n):
        ok = np.isfinite(init_lambda[i]) & np.isfinite(lam[i, 0])
        moved = float(np.mean(np.abs(lam[i, 0][ok] - init_lambda[i][ok]))) if ok.any() else 0.0
        ok0 = np.isfinite(init_lambda[i]) & np.isfinite(lam0[i])
        warm = float(np.mean(np.abs(lam0[i][ok0] - init_lambda[i][ok0]))) if ok0.any() else 0.0
        diagnostics.append({
            "data_start": float(d0[i]), "data": float(d1[i]), "residual": float(rr[i]),
            "residual_weight": float(wf[i]), "lambda_change": moved,
            "pretrain_change": warm,
            "diverged": bool(bad[i].any()), "epochs": total_epochs, "members": e1 - 1,
            "device": str(dev), "seconds_batch": elapsed,
        })
    log.info("neural fit: %d tiles x %d problems, %d epochs on %s in %.1f s", n, e1,
             total_epochs, dev, elapsed)
    return {"mean": mean, "std": std, "diagnostics": diagnostics}


def _safer(settings: Any) -> Any:
    """Settings of the retry of a diverged tile: twice the joint epochs."""
    nn = settings.neural
    safer = nn.model_copy(update={"epochs": max(1, 2 * nn.epochs)})
    return settings.model_copy(update={"neural": safer})


def fit_tiles_guarded(tiles: np.ndarray, model: Any, px: float, settings: Any, init: np.ndarray,
                    bandwidth: tuple[float, float], noise: FieldNoise, seeds: Sequence[int],
                    progress: Callable[[dict], None] | None,
                    weight: np.ndarray | None = None) -> dict:
    """The neural fit of a batch, with divergence handling per tile.

    A tile whose fit diverged (a problem's loss turned non-finite, its residual ended above
    10x its start, or its lambda is non-finite) is refitted once, alone with the other failed
    tiles of the batch, with :func:`_safer` settings in float64 and the same seeds. If the
    retry also fails, the tile takes its closed-form estimate ``init`` with NaN std: inventing
    an uncertainty would be dishonest.
    """
    def run(idx, retry):
        """The first fit, or the retry: twice the joint epochs in float64, the joint phase's
        step times ``neural.retry_lr_factor`` (the pretraining keeps its step)."""
        return fit_tiles(tiles[idx], model, px, _safer(settings) if retry else settings,
                         init_lambda=init[idx], bandwidth=bandwidth, noise=noise,
                         seeds=[seeds[i] for i in idx], device=settings.device,
                         dtype="float64" if retry else "float32",
                         joint_lr_factor=settings.neural.retry_lr_factor if retry else 1.0,
                         progress=progress, weight=None if weight is None else weight[idx])

    every = list(range(len(tiles)))
    out = run(every, retry=False)
    mean, std = np.array(out["mean"]), np.array(out["std"])
    diags = [dict(d) | {"retried": False, "fallback": "none"} for d in out["diagnostics"]]
    bad = [i for i, d in enumerate(diags) if d["diverged"]]
    if not bad:
        return {"mean": mean, "std": std, "diagnostics": diags}
    log.warning("neural fit: %d tile(s) diverged; retrying in float64 with a smaller step",
                len(bad))
    again = run(bad, retry=True)
    for j, i in enumerate(bad):
        d = dict(again["diagnostics"][j]) | {"diverged": True, "retried": True}
        if not again["diagnostics"][j]["diverged"]:
            mean[i], std[i] = again["mean"][j], again["std"][j]
            diags[i] = d | {"fallback": "retry"}
        else:
            log.warning("neural fit: a tile diverged again; using its closed-form estimate "
                        "(std NaN)")
            mean[i], std[i] = init[i], np.nan
            diags[i] = d | {"fallback": "closed-form"}
    return {"mean": mean, "std": std, "diagnostics": diags}
