"""The one settings model: parsed by the CLI, received by the flow, edited by the plugin and
recorded in ``run.json``. There is no second set of defaults anywhere: a function of the
library that takes a setting as an argument defaults to the constant its field uses here.

Every setting changes results unless its field is marked :func:`~pipeline.config_meta.no_effect`
(:mod:`pipeline.config_meta`); the ``[run]`` section lives in :mod:`pipeline.config_run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .channels import (
    IGNORE,
    ChannelChoice,
    ChannelRole,
    ChannelUse,
    check_channel_uses,
    choose_channels,
)
from .config_meta import affects_results, no_effect, no_effect_exclude, no_effect_paths
from .config_run import ANSCOMBE, DENOISE, Anscombe, DenoiseMethod, RunSettings

__all__ = [
    "ANSCOMBE",
    "DENOISE",
    "DOMAIN_MIN_AREA_UM2",
    "DOMAIN_SIGMA_UM",
    "INTERFACE_LENGTH_UM",
    "PHI_MAX",
    "Anscombe",
    "Calibration",
    "ChannelRole",
    "ChannelUse",
    "DenoiseMethod",
    "PhysicsSettings",
    "EstimatorSettings",
    "NeuralSettings",
    "UncertaintySettings",
    "RunSettings",
    "SegmentSettings",
    "Settings",
    "affects_results",
    "no_effect",
    "no_effect_exclude",
    "no_effect_paths",
    "load_settings",
]

PHI_MAX = 0.7
"""Default maximal packing fraction φ_max of heterochromatin (``physics.phi_max``)."""
INTERFACE_LENGTH_UM = 0.03
"""Default interface length l in µm (``physics.interface_length_um``)."""
DOMAIN_SIGMA_UM = 0.03
"""Default smoothing of φ_h before the domain threshold (``segmentation.domain_sigma_um``)."""
DOMAIN_MIN_AREA_UM2 = 0.005
"""Default smallest heterochromatin domain (``segmentation.domain_min_area_um2``)."""

TESTED_PIXEL_UM = (0.01, 0.06)
"""The pixel sizes accuracy was measured at (the stress suite's designs and its 10 nm STORM
variants, pipeline/simulate/stress.py; docs/accuracy.md): outside them, by more than 10 %,
a plane is flagged ``pixel-size-untested``."""


def pixel_size_untested(px: float | None) -> bool:
    """Whether ``px`` (µm) lies more than 10 % outside :data:`TESTED_PIXEL_UM`.

    >>> [pixel_size_untested(p) for p in (0.01, 0.02, 0.065, 0.1, 0.005, None)]
    [False, False, False, True, True, False]
    """
    lo, hi = TESTED_PIXEL_UM
    return px is not None and not 0.9 * lo <= float(px) <= 1.1 * hi

class Calibration(BaseModel):
    """Per-channel intensity calibration: ``field = (intensity - offset) * scale``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    offset: float
    scale: float = Field(gt=0)


class PhysicsSettings(BaseModel):
    """Constants of the chromatin model (docs/science.md section 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    phi_max: float = Field(PHI_MAX, gt=0, lt=1, description="maximal packing fraction of "
                           "heterochromatin")
    interface_length_um: float = Field(INTERFACE_LENGTH_UM, gt=0, description="interface "
                                       "length l of the free energy, in micrometres")


class EstimatorSettings(BaseModel):
    """Bandwidths of the mollifier (delta) and of the rate window (s), in micrometres.

    ``"auto"`` selects each from the data without ground truth and records the criterion.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    delta_um: float | Literal["auto"] = Field(
        "auto", description="mollifier radius in micrometres, or auto")
    window_um: float | Literal["auto"] = Field(
        "auto", description="rate window (Gaussian sigma) in micrometres, or auto")
    backend: Literal["spectral", "direct"] = "spectral"
    identifiable_fraction: float = Field(
        0.1, gt=0, lt=1, description="pixels with local A^2 below this fraction of its median are unidentifiable"
    )
    lambda_min: float = Field(0.0, ge=0)
    lambda_max: float = Field(20.0, gt=0)

    @field_validator("delta_um", "window_um")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v != "auto" and not (isinstance(v, int | float) and v > 0):
            raise ValueError(f"bandwidth must be 'auto' or a positive number of micrometres, got {v!r}")
        return v


class SegmentSettings(BaseModel):
    """Nucleus segmentation (``pipeline.segment``; docs/your-own-images.md).

    Lengths in micrometres, areas in square micrometres. ``"auto"``/None values are measured
    on each plane and recorded.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    threshold: Literal["otsu", "li"] = "otsu"
    smooth_um: float = Field(0.2, gt=0, description="Gaussian sigma before the threshold (at "
                             "least one pixel): hides the chromatin texture inside nuclei")
    nucleus_radius_um: float | Literal["auto"] = Field(
        "auto", description="expected nucleus radius; seeds of the watershed are at least "
        "one radius apart. auto: the area-weighted median half-width of the thresholded "
        "objects")
    min_area_um2: float | None = Field(None, gt=0, description="smaller objects are dropped "
                                       "(None: a tenth of a typical nucleus's area)")
    max_area_um2: float | None = Field(None, gt=0, description="larger objects are dropped "
                                       "(None: no upper limit)")
    split: bool = Field(True, description="split touching nuclei by a distance watershed")
    edge_level: float = Field(
        0.5, gt=0, lt=1, description="each nucleus's edge is drawn this fraction of the way "
        "from the background up to its own bright level (0.5: half maximum)")
    max_background_ratio: float = Field(
        0.5, gt=0, lt=1, description="the darker class is background only if its mean is at "
        "most this fraction of the brighter class's (field units: 0 is no chromatin)")
    min_background_contrast: float = Field(
        2.5, gt=0, description="... and if the threshold is at least this many of its robust "
        "standard deviations above its median (a flat background, not a chromatin texture)")
    min_nucleus_radius_um: float = Field(
        1.0, gt=0, description="... and if the measured nucleus radius is at least this (smaller "
        "bright objects are chromatin domains, e.g. chromocentres); not applied when "
        "nucleus_radius_um is set")
    max_border_fraction: float = Field(
        0.9, gt=0, le=1, description="... and if at most this fraction of the bright area lies "
        "in objects cut by the image border (more: the structure is larger than the field)")
    domain_sigma_um: float = Field(
        DOMAIN_SIGMA_UM, gt=0, description="heterochromatin domains: Gaussian sigma of phi_h "
        "before the Otsu threshold inside nuclei")
    domain_min_area_um2: float = Field(
        DOMAIN_MIN_AREA_UM2, gt=0, description="smaller heterochromatin domains are dropped")


class UncertaintySettings(BaseModel):
    """The per-pixel standard deviation of lambda, for every method (docs/uncertainty.md).

    ``std^2 = spread^2 + bias^2 + noise_bias^2``: the spread of estimates on noise-resampled
    copies of the data (antithetic pairs ``y + z``, ``y - z``, ``z`` drawn from the estimated
    noise model), the smoothing bias (from the s^2 law, or, closed form, the contrast a wide
    window removed where that is larger), and the second-order noise bias (the members' mean
    minus the estimate on the data).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    ensemble_size: int = Field(4, ge=2, description="noise-resampled members per tile (even)")
    bias_factor: float = Field(
        1.5, ge=1, description="step j of the bandwidth-bias term. Closed form: "
        "2.25 |lam(j delta, j s) - lam(delta, s)| / (j^2 - 1) (a forward step); neural: "
        "|lam_j - lam_1/j| / (j^2 - j^-2) (the s^2 law); 1 leaves it out"
    )
    attenuation_bias: bool = Field(
        True, description="closed form: the bandwidth-bias term is the larger of the forward "
        "step and the contrast the window removed, read from the map (docs/uncertainty.md); "
        "False: the forward step alone"
    )
    noise_bias: bool = Field(
        True, description="add |mean of members - estimate| (the second-order noise bias)"
    )
    variance_smoothing: float = Field(
        2.0, ge=0, description="the members' variance is averaged over a Gaussian of this "
        "many rate windows s (a few members give a noisy per-pixel variance); 0: none"
    )
    calibration_scale: float = Field(
        0.0, ge=0, lt=1, description="relative standard uncertainty of each channel's "
        "calibration scale (0.05: 5 %), which no image can show for one channel: the std adds, "
        "per channel, the change of lambda when that scale is 1 + this larger; 0: the "
        "calibration is taken as exact"
    )

    @field_validator("ensemble_size")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"ensemble_size must be even (antithetic noise pairs), got {v}")
        return v


class NeuralSettings(BaseModel):
    """The neural per-tile fit (``pipeline.estimate.neural``; docs/neural.md): a field network
    (a multiresolution feature grid with an MLP decoder) read through the mollifier layer, and
    a rate network (a coordinate MLP on Fourier features), trained jointly on the raw-data
    misfit plus the PDE residual.

    Bounds on lambda are ``EstimatorSettings.lambda_min/lambda_max``; bandwidths come from the
    automatic selection. Members of the ensemble are ``uncertainty.ensemble_size``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    field_spacing: float = Field(
        0.35, gt=0, description="finest feature-grid spacing of the field network, in units "
        "of the mollifier radius delta (its capacity)"
    )
    field_features: int = Field(8, ge=1, description="features per grid level")
    hidden: int = Field(32, ge=4, description="width of both networks' hidden layers")
    rate_frequencies: int = Field(16, ge=1, description="Fourier features of the rate network")
    rate_spacing: float = Field(
        3.0, gt=0, description="the rate network's Fourier frequencies have scale 1 / "
        "(rate_spacing * s): its spatial bandwidth is tied to the window s"
    )
    pretrain_epochs: int = Field(150, ge=0, description="field to the data, rate to the "
                                 "closed-form lambda, before the joint fit")
    epochs: int = Field(150, ge=0, description="joint epochs (data misfit + residual)")
    lr: float = Field(0.005, gt=0, description="Adam step of both networks")
    misfit_increase: float = Field(
        0.0, ge=0, description="discrepancy principle: the residual weight is raised while "
        "the data misfit (mean squared, in units of the noise variance) is below its "
        "pretrained value plus this, lowered while above (docs/neural.md)"
    )
    residual_weight_floor: float = Field(
        0.01, ge=0, description="the residual weight never falls below this: without it, a "
        "misfit a hair above its target (within its own noise) lowers the weight every epoch "
        "until the PDE no longer constrains lambda (docs/neural.md)"
    )
    retry_lr_factor: float = Field(
        0.1, gt=0, le=1, description="a diverged tile is refitted once in float64 with the "
        "joint phase's learning rate times this factor and twice its epochs (same seeds; the "
        "pretraining keeps its step); if it diverges again it falls back to the closed-form "
        "estimate"
    )


class Settings(BaseModel):
    """Everything a run needs. Field names match the CLI's long options."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["closed-form", "neural"] = Field(
        "closed-form", description="closed-form: mollified local least squares (fast); "
        "neural: the paper's field and rate networks trained per tile (docs/neural.md). Both "
        "give a std (docs/uncertainty.md)"
    )
    channels: tuple[ChannelUse, ...] | None = Field(
        None, description="channel roles in C order, one per channel of the file: "
        "chromatin, heterochromatin or ignore, e.g. chromatin,heterochromatin,ignore "
        "(default: from the file's channel names, else by channel count)"
    )
    calibration: tuple[Calibration, ...] | Literal["auto", "image"] = Field(
        "image", description="OFFSET:SCALE per channel; image: from the image itself "
        "(dark level; two channels: self-calibration, the percentile rule with a warning when "
        "not identifiable; one channel: a nuclear median of φ_max/2 above the dark level, or "
        "above 0 without one); auto: "
        "percentiles 0.5/99.5 to 0 and full occupancy (docs/calibration.md)"
    )
    dark_frame: Path | None = Field(
        None, description="TIFF recorded with the shutter closed: its median per channel is "
        "the dark level (offset) for --calibration image"
    )
    flat_field: Path | None = Field(
        None, description="TIFF of a uniform fluorescent sample under the same illumination: "
        "each channel is divided by its smoothed, mean-one profile above the dark level "
        "before calibration (uneven illumination otherwise moves λ across the field)"
    )
    defect_pixels: Literal["replace", "off"] = Field(
        "replace", description="replace: single hot or dead pixels (a pixel 12 noise scales "
        "from its 8 neighbours' median, rare ones only) take that median before calibration; "
        "off: use every pixel as read (docs/your-own-images.md)"
    )
    channel_offset_um: tuple[float, float] | None = Field(
        None, description="DY,DX: where the heterochromatin channel shows a point minus where "
        "the chromatin channel shows it, in µm, as measured on beads; the heterochromatin "
        "channel is moved back by it before calibration (two channels)"
    )
    calibration_check: Literal["warn", "fix", "off"] = Field(
        "warn", description="two channels with OFFSET:SCALE pairs: check them against the "
        "image's physics; warn: flag the plane calibration-contradicted when the image prefers "
        "a heterochromatin/chromatin scale ratio 10 % or more away; fix: also use the ratio "
        "the image prefers (docs/calibration.md)"
    )
    calibrate_planes: Literal["first", "each"] = Field(
        "first", description="stacks with --calibration image: first: every plane uses the "
        "calibration of the first plane fitted (planes stay comparable; a plane whose "
        "intensity drifted by over 10 % is flagged intensity-drift); each: every plane is "
        "calibrated on its own (bleaching or depth no longer move λ, nor do real differences "
        "between planes)"
    )
    pixel_size_um: float | None = Field(None, gt=0, description="micrometres per pixel "
                                        "(overrides the TIFF metadata)")
    physics: PhysicsSettings = PhysicsSettings()
    segmentation: SegmentSettings = SegmentSettings()
    estimator: EstimatorSettings = EstimatorSettings()
    uncertainty: UncertaintySettings = UncertaintySettings()
    neural: NeuralSettings = NeuralSettings()
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the fit runs (auto: a GPU when there is one)")
    seed: int = Field(0, description="random seed (self-calibration, noise resampling, "
                      "networks)")
    recursive: bool = no_effect(False, description="look for TIFFs in subfolders too")
    run: RunSettings = RunSettings()

    @field_validator("dark_frame", "flat_field")
    @classmethod
    def _frame_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None and not Path(v).is_file():
            what = "dark frame" if info.field_name == "dark_frame" else "flat field"
            raise ValueError(f"{what} {v} is not a file")
        return v

    @model_validator(mode="after")
    def _check_channels(self) -> Settings:
        if self.channels is not None:
            check_channel_uses(self.channels)
        if not isinstance(self.calibration, str) and self.channels is not None:
            read = [c for c in self.channels if c != IGNORE]
            if len(self.calibration) not in (1, len(read)):
                raise ValueError(
                    f"{len(self.calibration)} calibration pair(s) given for "
                    f"{len(read)} channel(s) read ({','.join(self.channels)})"
                )
        return self

    def calibration_for(
        self, n_channels: int
    ) -> tuple[Calibration, ...] | Literal["auto", "image"]:
        """The calibration for an image with ``n_channels`` channels (one pair applies to all)."""
        if isinstance(self.calibration, str):
            return self.calibration
        if len(self.calibration) == 1:
            return self.calibration * n_channels
        if len(self.calibration) != n_channels:
            raise ValueError(
                f"--calibration gives {len(self.calibration)} pair(s) but the image has "
                f"{n_channels} channel(s); give one pair per channel, or one pair for all"
            )
        return self.calibration

    def channel_roles(self, n_channels: int, names: tuple[str, ...] | None = None
                      ) -> ChannelChoice:
        """The channels of an image with ``n_channels`` channels named ``names`` to read, and
        their roles: ``--channels`` wins, else the names, else the default order
        (:func:`pipeline.channels.choose_channels`)."""
        return choose_channels(n_channels, names, self.channels)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML or YAML file, with ``overrides`` (None values ignored) on top."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ValueError(f"{path}: config must be .toml, .yaml or .yml")
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return Settings.model_validate(data)
