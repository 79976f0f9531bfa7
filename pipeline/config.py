"""The one settings model: parsed by the CLI, received by the flow, edited by the plugin and
recorded in ``run.json``. There is no second set of defaults anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Calibration",
    "ChannelRole",
    "PhysicsSettings",
    "EstimatorSettings",
    "NeuralSettings",
    "RunSettings",
    "Settings",
    "parse_calibration",
    "parse_channels",
    "load_settings",
]

ChannelRole = Literal["chromatin", "heterochromatin"]


class Calibration(BaseModel):
    """Per-channel intensity calibration: ``field = (intensity - offset) * scale``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    offset: float
    scale: float = Field(gt=0)


class PhysicsSettings(BaseModel):
    """Constants of the chromatin model (SCIENCE.md section 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    phi_max: float = Field(0.7, gt=0, lt=1)
    interface_length_um: float = Field(0.03, gt=0)


class EstimatorSettings(BaseModel):
    """Bandwidths of the mollifier (delta) and of the rate window (s), in micrometres.

    ``"auto"`` selects each from the data without ground truth and records the criterion.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    delta_um: float | Literal["auto"] = "auto"
    window_um: float | Literal["auto"] = "auto"
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


class RunSettings(BaseModel):
    """How ``chromarate run`` executes: denoising, tiling and the dask cluster.

    Tile sizes are in pixels; the halo around each tile is not configurable, it is derived from
    the mollifier support and the rate window (:func:`pipeline.tiling.halo_px`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    denoise: Literal["nl-means", "gaussian", "none"] = "nl-means"
    anscombe: Literal["auto", "on", "off"] = Field(
        "auto", description="variance-stabilise photon counts before denoising (auto: integer data)"
    )
    tile_px: int = Field(256, ge=16, description="output side of an interior tile, in pixels")
    overlap_px: int = Field(32, ge=0, description="width of the feathered blend between tiles")
    segment: bool = True
    workers: int = Field(1, ge=1, description="1: in process; N > 1: a dask LocalCluster")
    cluster: Literal["local", "slurm", "address"] = "local"
    scheduler_address: str | None = None
    slurm_queue: str | None = None
    slurm_account: str | None = None
    slurm_cores: int = Field(4, ge=1)
    slurm_memory: str = "16GB"
    slurm_walltime: str = "02:00:00"
    slurm_jobs: int = Field(1, ge=1)
    slurm_job_extra: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> RunSettings:
        if self.overlap_px >= self.tile_px:
            raise ValueError(
                f"overlap_px ({self.overlap_px}) must be smaller than tile_px ({self.tile_px})"
            )
        if self.cluster == "address" and not self.scheduler_address:
            raise ValueError("cluster 'address' needs scheduler_address, e.g. tcp://host:8786")
        return self


class NeuralSettings(BaseModel):
    """The neural per-tile fit (``pipeline.estimate.neural``; see docs/neural.md).

    Bounds on lambda are ``EstimatorSettings.lambda_min/lambda_max``; bandwidths come from the
    closed-form selection.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    field_network: Literal["grid", "frozen"] = Field(
        "frozen", description="grid: a learnable pixel grid read through the mollifier; "
        "frozen: the measured data (docs/neural.md says why this is the default)"
    )
    ensemble_size: int = Field(4, ge=2, description="members per tile (even: antithetic noise)")
    epochs: int = Field(30, ge=0)
    lr_rate: float = Field(0.003, gt=0, description="Adam step of the rate grid (logit units)")
    lr_field: float = Field(1e-4, gt=0, description="Adam step of the field grid")
    residual_weight: float = Field(1.0, gt=0, description="residual term / noise-weighted data term")
    rate_spacing: float = Field(2.0, gt=0, description="rate-grid spacing in units of the window s")
    resample_noise: bool = True
    bandwidth_jitter: float = Field(
        1.0, ge=1, description="member pairs use (delta, s) times factors from 1/j to j; 1: "
        "all members at the chosen bandwidths (the default: jitter cost accuracy, docs/neural.md)"
    )
    bias_factor: float = Field(
        1.2, ge=1, description="the std adds a smoothing-bias term from the closed-form maps at "
        "(delta, s) times j and 1/j: |lam_j - lam_1/j| / (j^2 - j^-2), the s^2 law of the "
        "smoothing bias (docs/neural.md); 1 leaves it out"
    )
    std_scale: float = Field(
        1.0, gt=0, description="factor on the ensemble's std before the bias term is added "
        "(1: none; kept for users who want wider or narrower intervals)"
    )
    retry_lr_factor: float = Field(
        0.1, gt=0, le=1, description="a diverged tile is refitted once in float64 with both "
        "learning rates times this factor and twice the epochs (same seeds); if it diverges "
        "again it falls back to the closed-form estimate (pipeline.tiling.fit_plane)"
    )

    @field_validator("ensemble_size")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"ensemble_size must be even (antithetic noise pairs), got {v}")
        return v


class Settings(BaseModel):
    """Everything a run needs. Field names match the CLI's long options."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["closed-form", "neural"] = Field(
        "neural", description="neural: as accurate as closed-form on the held-out synthetic table "
        "and gives a calibrated std (docs/accuracy.md); closed-form: faster, no std"
    )
    channels: tuple[ChannelRole, ...] | None = Field(
        None, description="channel roles in C order; default by channel count"
    )
    calibration: tuple[Calibration, ...] | Literal["auto"] = "auto"
    pixel_size_um: float | None = Field(None, gt=0, description="overrides TIFF metadata")
    physics: PhysicsSettings = PhysicsSettings()
    estimator: EstimatorSettings = EstimatorSettings()
    neural: NeuralSettings = NeuralSettings()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    recursive: bool = False
    run: RunSettings = RunSettings()

    @model_validator(mode="after")
    def _check_channels(self) -> Settings:
        if self.channels is not None:
            if len(self.channels) not in (1, 2) or len(set(self.channels)) != len(self.channels):
                raise ValueError(
                    f"channels must be one role or two distinct roles, got {list(self.channels)}"
                )
            if len(self.channels) == 1 and self.channels[0] != "heterochromatin":
                raise ValueError(
                    "a single channel must be 'heterochromatin' (the single-channel model "
                    f"assumes a constant chromatin fraction); got {self.channels[0]!r}"
                )
        if self.calibration != "auto" and self.channels is not None:
            if len(self.calibration) not in (1, len(self.channels)):
                raise ValueError(
                    f"{len(self.calibration)} calibration pair(s) given for "
                    f"{len(self.channels)} channel(s)"
                )
        return self

    def calibration_for(self, n_channels: int) -> tuple[Calibration, ...] | Literal["auto"]:
        """The calibration for an image with ``n_channels`` channels (one pair applies to all)."""
        if self.calibration == "auto":
            return "auto"
        if len(self.calibration) == 1:
            return self.calibration * n_channels
        if len(self.calibration) != n_channels:
            raise ValueError(
                f"--calibration gives {len(self.calibration)} pair(s) but the image has "
                f"{n_channels} channel(s); give one pair per channel, or one pair for all"
            )
        return self.calibration

    def roles_for(self, n_channels: int) -> tuple[ChannelRole, ...]:
        """The channel roles for an image with ``n_channels`` channels."""
        if self.channels is not None:
            if len(self.channels) != n_channels:
                raise ValueError(
                    f"--channels names {len(self.channels)} channel(s) "
                    f"({','.join(self.channels)}) but the image has {n_channels}"
                )
            return self.channels
        if n_channels == 1:
            return ("heterochromatin",)
        if n_channels == 2:
            return ("chromatin", "heterochromatin")
        raise ValueError(
            f"the image has {n_channels} channels; chromarate understands 1 "
            "(heterochromatin) or 2 (chromatin,heterochromatin); split the file"
        )


def parse_calibration(text: str | None) -> tuple[Calibration, ...] | Literal["auto"]:
    """Parse ``"OFFSET:SCALE[,OFFSET:SCALE]"`` (or ``"auto"``).

    >>> parse_calibration("100:0.001,50:0.002")[1].offset
    50.0
    """
    if text is None or text.strip().lower() == "auto":
        return "auto"
    pairs = []
    for item in text.split(","):
        try:
            offset, scale = item.split(":")
            pairs.append(Calibration(offset=float(offset), scale=float(scale)))
        except ValueError as exc:
            raise ValueError(
                f"calibration {item!r} is not OFFSET:SCALE with a positive scale "
                f"(in {text!r})"
            ) from exc
    return tuple(pairs)


def parse_channels(text: str | None) -> tuple[ChannelRole, ...] | None:
    """Parse ``"chromatin,heterochromatin"`` into roles (None means by channel count)."""
    if text is None or text.strip().lower() == "auto":
        return None
    roles = tuple(r.strip() for r in text.split(","))
    for r in roles:
        if r not in ("chromatin", "heterochromatin"):
            raise ValueError(f"unknown channel role {r!r} in {text!r}; use chromatin or heterochromatin")
    return roles  # type: ignore[return-value]


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
