"""The DeepXDE arm: the same problem, networks, loss and optimiser, set up with DeepXDE.

An outside peer for the mollifier layer: what a user who picks DeepXDE (1.15, PyTorch backend)
for the inverse problem on an image would write.

- ``dde.geometry.Rectangle`` over the pixel centres;
- the observations as ``dde.icbc.PointSetBC`` at every pixel centre (one per fitted channel);
- the PDE's collocation points: the interior pixel centres as ``anchors`` (``num_domain=0``),
  the same frame-free interior the other arms' residual uses;
- one network with the field and the rate as outputs: a ``dde.nn.NN`` holding the *same*
  field and rate networks as the other arms (same sizes, same initial weights);
- ``pde(x, y)``: the derivatives by ``dde.grad.jacobian`` and ``dde.grad.hessian`` (the
  biharmonic as the Hessian of the Laplacian), the residual ``A λ - B`` from
  :mod:`pipeline.physics`; the heat problem's known source is read at each point's pixel;
- ``dde.Model(data, net).compile("adam", lr, loss_weights=[w / mean(A²), 1 / σ²])``: with
  DeepXDE's mean squared errors this is exactly the other arms' loss.

As DeepXDE does, the PDE is evaluated on every input row, observation points included (its
loss keeps the anchor rows only); that cost is part of what a DeepXDE user pays. Warm-up: for
the first ``settings.warmup`` steps ``pde`` returns zeros without differentiating, so the
data misfit alone is fitted, as in the other arms.

:meth:`DeepXDEArm.step` runs one iteration of the body of ``Model.train``'s loop
(``Model._train_sgd``: the next batch, here all points, and one optimiser step), so that the
arms can be stepped alternately and timed per step; ``train``'s periodic evaluation and
printing are left out, as the other arms' evaluation is.

Importing DeepXDE on a CUDA machine makes CUDA torch's default device for the whole process;
the arm restores the previous default and sets its own device only around its own work.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np

from .arms import TrainSettings, interior_mask, pearson, residual_scale
from .nets import build_networks
from .problems import Problem

__all__ = ["DEEPXDE_NAMES", "DeepXDEArm", "deepxde_available", "import_deepxde"]

#: The derivative names this arm computes (those of the heat, chromatin and probe problems).
DEEPXDE_NAMES = ("u", "x", "y", "lap", "bilap")


def import_deepxde():
    """Import DeepXDE on the PyTorch backend without changing torch's default device.

    Raises ``ImportError`` with what to install when DeepXDE is missing.
    """
    import torch

    os.environ.setdefault("DDE_BACKEND", "pytorch")
    before = torch.get_default_device()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # "Using backend: pytorch"
            import deepxde as dde
    except ImportError as exc:
        raise ImportError("the DeepXDE arm needs DeepXDE: pip install 'chromarate[bench]'"
                          ) from exc
    finally:
        torch.set_default_device(before)
    if dde.backend.backend_name != "pytorch":
        raise ImportError(f"the DeepXDE arm needs DeepXDE's pytorch backend, got "
                          f"{dde.backend.backend_name!r} (set DDE_BACKEND=pytorch)")
    return dde


def deepxde_available() -> str | None:
    """``None`` when the arm can run, else why not (one line)."""
    try:
        import_deepxde()
    except ImportError as exc:
        return str(exc)
    return None


def _pixel_values(grid: np.ndarray, h: float, x):
    """``grid[i, j]`` at each row ``(y, x)`` of ``x`` (points on the pixel centres)."""
    import torch

    idx = torch.round(x.detach() / h).long()
    table = torch.as_tensor(grid, dtype=x.dtype, device=x.device)
    return table[idx[:, 0], idx[:, 1]]


class DeepXDEArm:
    """One problem set up with DeepXDE; the interface of :class:`~.arms.ArmState`.

    Parameters
    ----------
    problem
        A 2-D problem (heat, chromatin or the derivative probe).
    settings
        The shared optimisation settings (network sizes, seed, learning rate, residual
        weight, warm-up, dtype, border).
    device
        A ``torch.device``.
    names
        Derivative names; default the problem's physics model's.
    """

    arm = "deepxde"

    def __init__(self, problem: Problem, settings: TrainSettings, device, *,
                 names: tuple[str, ...] | None = None) -> None:
        import torch

        if problem.ndim != 2:
            raise ValueError("the DeepXDE arm covers the 2-D problems (heat, chromatin, probe)")
        dde = import_deepxde()
        self.problem, self.settings, self.device = problem, settings, torch.device(device)
        dtype = getattr(torch, settings.dtype)
        self.model_physics = problem.model()
        self.names = tuple(names) if names is not None else tuple(self.model_physics.derivatives)
        unknown = set(self.names) - set(DEEPXDE_NAMES)
        if unknown:
            raise ValueError(f"the DeepXDE arm computes {DEEPXDE_NAMES}, not {sorted(unknown)}")
        self.mask_np = interior_mask(problem, settings.border_px)
        self.a_scale = residual_scale(problem, self.names, self.mask_np, self.device, dtype)
        self.field, self.rate = build_networks(
            problem, seed=settings.seed, width=settings.width, depth=settings.depth
        )
        self.iteration = 0
        self._residual_on = settings.warmup <= 0
        old_dtype = torch.get_default_dtype()
        try:  # DeepXDE prints as it configures and compiles: keep the benchmark's output
            with contextlib.redirect_stdout(io.StringIO()), self.device:
                dde.config.set_default_float(settings.dtype)
                self._build(dde, dtype)
        finally:
            torch.set_default_dtype(old_dtype)

    # ------------------------------------------------------------------ setup
    def _build(self, dde, dtype) -> None:
        import torch

        p, h = self.problem, self.problem.pixel_size_um
        n_fit = p.n_fit
        field, rate = self.field, self.rate

        class FieldAndRate(dde.nn.NN):
            """The benchmark's field and rate networks as one DeepXDE network."""

            def __init__(self):
                super().__init__()
                self.field, self.rate = field, rate

            def forward(self, inputs):
                x = inputs if self._input_transform is None else self._input_transform(inputs)
                y = torch.cat([self.field(x), self.rate(x)], dim=1)
                if self._output_transform is not None:
                    y = self._output_transform(inputs, y)
                return y

        self.net = FieldAndRate().to(device=self.device, dtype=dtype)
        coords = p.coordinates().astype(np.float64)
        ext = p.extent_um()
        geom = dde.geometry.Rectangle(xmin=[0.0, 0.0], xmax=[ext[0], ext[1]])
        observe = [dde.icbc.PointSetBC(coords, p.data[c].reshape(-1, 1), component=c)
                   for c in range(n_fit)]
        anchors = coords[self.mask_np.ravel()]
        physics, names, fixed = self.model_physics, self.names, p.fixed_values
        source = p.source

        def derivatives(x, y) -> dict:
            d: dict[str, list] = {name: [] for name in names}
            for c in range(n_fit):
                if "u" in names:
                    d["u"].append(y[:, c : c + 1])
                if "y" in names:
                    d["y"].append(dde.grad.jacobian(y, x, i=c, j=0))
                if "x" in names:
                    d["x"].append(dde.grad.jacobian(y, x, i=c, j=1))
                if "lap" in names or "bilap" in names:
                    lap = (dde.grad.hessian(y, x, component=c, i=0, j=0)
                           + dde.grad.hessian(y, x, component=c, i=1, j=1))
                    if "lap" in names:
                        d["lap"].append(lap)
                    if "bilap" in names:
                        d["bilap"].append(dde.grad.hessian(lap, x, i=0, j=0)
                                          + dde.grad.hessian(lap, x, i=1, j=1))
            out = {}
            for name, cols in d.items():
                t = torch.cat(cols, dim=1)  # (N, C)
                if fixed:  # known constant fields: value, zero derivatives
                    extra = (t.new_tensor(fixed).expand(t.shape[0], len(fixed)) if name == "u"
                             else t.new_zeros(t.shape[0], len(fixed)))
                    t = torch.cat([t, extra], dim=1)
                out[name] = t.T[None, :, :, None]  # (1, C, N, 1): an image of N x 1 pixels
            return out

        def pde(x, y):
            if not self._residual_on:
                return 0.0 * y[:, :1]  # warm-up: the data misfit alone, no derivatives
            model = physics
            if source is not None:  # the heat problem: the known source at each pixel
                model = type(physics)(source=_pixel_values(source, h, x)[None, :, None])
            a, b = model.linear_terms(derivatives(x, y))
            lam = y[:, n_fit : n_fit + 1]
            return a[0] * lam - b[0]  # (N, 1)

        self.data = dde.data.PDE(geom, pde, observe, num_domain=0, num_boundary=0,
                                 anchors=anchors)
        self.model = dde.Model(self.data, self.net)
        sigma2 = max(p.noise_sigma, 1e-6 * float(p.data.std())) ** 2
        weights = [self.settings.residual_weight / self.a_scale] + [1.0 / (sigma2 * n_fit)] * n_fit
        self.model.compile("adam", lr=self.settings.lr, loss_weights=weights)
        self.coords = torch.as_tensor(coords, dtype=dtype, device=self.device)

    # ------------------------------------------------------------------ the ArmState interface
    def step(self) -> dict[str, float]:
        """One iteration of ``Model.train``'s loop (data-only during warm-up)."""
        self._residual_on = self.iteration >= self.settings.warmup
        m = self.model
        with self.device:
            m.train_state.set_data_train(*m.data.train_next_batch(m.batch_size))
            m._train_step(m.train_state.X_train, m.train_state.y_train,
                          m.train_state.train_aux_vars)
        self.iteration += 1
        # DeepXDE's step does not return the loss; computing it would cost another pass
        return {"loss": float("nan"), "data": float("nan"), "residual": float("nan")}

    def lam(self) -> np.ndarray:
        """The current λ on the grid (NumPy, float64)."""
        import torch

        with torch.no_grad():
            lam = self.rate(self.coords)[:, 0].reshape(self.problem.grid)
        return lam.detach().cpu().double().numpy()

    def r(self) -> float:
        """Pearson r of the current λ with the truth on the interior."""
        return pearson(self.lam()[self.mask_np], self.problem.lam_true[self.mask_np])

    @property
    def n_points(self) -> int:
        """Rows DeepXDE feeds the network per step (observations plus anchors)."""
        return int(self.data.train_x.shape[0]) if self.data.train_x is not None else 0
