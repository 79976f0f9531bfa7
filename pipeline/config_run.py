"""How ``chromarate run`` executes (``[run]`` of the settings): denoising, tiling, inputs, and
the dask cluster. Part of the one settings model, :mod:`pipeline.config` (import it from
there); the cluster and TLS options are marked :func:`~pipeline.config_meta.no_effect`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config_meta import no_effect

__all__ = ["ANSCOMBE", "DENOISE", "Anscombe", "DenoiseMethod", "RunSettings"]

DenoiseMethod = Literal["nl-means", "gaussian", "none"]
Anscombe = Literal["auto", "on", "off"]
DENOISE: DenoiseMethod = "nl-means"
"""Default denoiser (``run.denoise``; :func:`pipeline.denoise.calibrate`)."""
ANSCOMBE: Anscombe = "auto"
"""Default variance stabilisation (``run.anscombe``; :func:`pipeline.denoise.calibrate`)."""


class RunSettings(BaseModel):
    """How ``chromarate run`` executes: denoising, tiling and the dask cluster.

    Tile sizes are in pixels; the halo around each tile is not configurable, it is derived from
    the mollifier support and the rate window (:func:`pipeline.tiling.halo_px`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    denoise: DenoiseMethod = Field(
        DENOISE, description="self-calibrated denoiser, or none (the store's 'denoised' "
        "image; lambda is fitted on the calibrated raw data)")
    anscombe: Anscombe = Field(
        ANSCOMBE, description="variance-stabilise photon counts before denoising (auto: integer data)"
    )
    tile_px: int = Field(256, ge=16, description="output side of an interior tile, in pixels")
    overlap_px: int = Field(32, ge=0, description="width of the feathered blend between tiles")
    segment: bool = Field(True, description="segment nuclei and report rates inside them "
                          "(off: the whole field, no nucleus segmentation)")
    nuclei_dir: str | None = Field(
        None, description="folder of nucleus label images (0 background, 1..n nuclei), one "
        "per input with the same stem (Cellpose's _cp_masks and _masks suffixes are "
        "understood), used instead of the automatic segmentation")
    axes: str | None = Field(
        None, description="axes of files whose metadata do not name them (plain multi-page "
        "TIFFs), e.g. ZYX, TYX, CYX, ZCYX, TCYX (default: pages are Z planes)")
    z_step_um: float | None = Field(
        None, gt=0, description="Z step in micrometres (overrides the metadata); without "
        "one the Z scale is recorded as unknown")

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().upper()
        lead = v[:-2]
        if v in ("YXC", "ZYXC", "TYXC"):  # channels last: numpy's (Y, X, C) page by page
            return v
        if (not v.endswith("YX") or set(lead) - set("CZT") or len(set(lead)) != len(lead)
                or ("Z" in lead and "T" in lead)):
            raise ValueError(f"axes {v!r}: use letters C, Z or T (at most one of Z, T) "
                             "followed by YX, e.g. ZYX, CYX, TCYX (or YXC for channels last)")
        return v
    workers: int = no_effect(1, ge=1, description="1: in process; N > 1: a dask LocalCluster "
                             "of N processes")
    cluster: Literal["local", "slurm", "address"] = no_effect(
        "local", description="where the workers run: this machine, SLURM jobs, or a running "
        "dask scheduler (scheduler_address)")
    scheduler_address: str | None = no_effect(
        None, description="tcp://host:port (or tls://) of a running dask scheduler")
    slurm_queue: str | None = no_effect(None)
    slurm_account: str | None = no_effect(None)
    slurm_cores: int = no_effect(4, ge=1)
    slurm_memory: str = no_effect("16GB")
    slurm_walltime: str = no_effect("02:00:00")
    slurm_jobs: int = no_effect(1, ge=1)
    slurm_job_extra: tuple[str, ...] = no_effect(())
    tls_ca_file: str | None = no_effect(
        None, description="address mode: the CA certificate (PEM) of a TLS dask scheduler")
    tls_cert_file: str | None = no_effect(
        None, description="address mode: this client's certificate (PEM), signed by the CA")
    tls_key_file: str | None = no_effect(
        None, description="address mode: this client's private key (PEM); omit if it is in "
        "the certificate file")
    tls_shared_dir: str = no_effect(
        "~/.chromarate/tls", description="slurm: a folder on the file system the jobs share, "
        "where each run's temporary TLS certificates are written (readable by you only)")

    @model_validator(mode="after")
    def _check(self) -> RunSettings:
        if self.overlap_px >= self.tile_px:
            raise ValueError(
                f"overlap_px ({self.overlap_px}) must be smaller than tile_px ({self.tile_px})"
            )
        if self.cluster == "address" and not self.scheduler_address:
            raise ValueError("cluster 'address' needs scheduler_address, e.g. tcp://host:8786")
        if (self.tls_cert_file or self.tls_key_file) and not self.tls_ca_file:
            raise ValueError("tls_cert_file and tls_key_file need tls_ca_file (the CA that "
                             "signed the scheduler's certificate)")
        if self.tls_ca_file and not self.tls_cert_file:
            raise ValueError("tls_ca_file needs tls_cert_file (a client certificate signed by "
                             "that CA; the scheduler refuses clients without one)")
        if (self.scheduler_address or "").startswith("tls://") and not self.tls_ca_file:
            raise ValueError(f"scheduler_address {self.scheduler_address} uses TLS: give "
                             "tls_ca_file, tls_cert_file and tls_key_file in the config file")
        return self
