"""Nuclei and domains with scikit-image; edge distances."""

import numpy as np

from pipeline.segment import edge_distance_um, segment_domains, segment_nuclei


def _cell(n=128, r=40):
    yy, xx = np.mgrid[:n, :n]
    inside = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < r**2
    spots = (np.sin(xx / 4) * np.sin(yy / 4) > 0.5) & inside
    phi_w = np.where(inside, 0.3, 1.0)
    phi_h = np.where(spots, 0.5, np.where(inside, 0.2, 0.0))
    return np.stack([phi_h, phi_w]), inside


def test_nucleus_on_background():
    fields, inside = _cell()
    labels, rec = segment_nuclei(fields, 0.05)
    assert rec["mode"] == "otsu" and labels.max() == 1
    assert ((labels > 0) == inside).mean() > 0.97
    domains, drec = segment_domains(fields[0], labels, 0.05, domain_sigma_um=0.02)
    assert drec["n_domains"] >= 5
    assert not (domains > 0)[~inside].any()


def test_field_inside_one_nucleus_is_whole_field():
    rng = np.random.default_rng(0)
    phi_h = 0.35 + 0.02 * rng.normal(size=(96, 96))
    labels, rec = segment_nuclei(np.stack([phi_h, np.full_like(phi_h, 0.3)]), 0.02)
    assert rec["mode"] == "whole-field" and (labels == 1).all()


def test_step_in_heterochromatin_is_not_background():
    phi_h = np.full((96, 96), 0.47)
    phi_h[:, :48] = 0.23  # two chromatin states, no dark background
    labels, rec = segment_nuclei(np.stack([phi_h, np.full_like(phi_h, 0.3)]), 0.02)
    assert rec["mode"] == "whole-field" and rec["effectiveness"] > 0.8


def test_edge_distance():
    m = np.zeros((20, 20), int)
    m[5:15, 5:15] = 1
    d = edge_distance_um(m, 0.1)
    assert np.isnan(d[0, 0]) and abs(d[9, 9] - 0.5) < 1e-9
    assert np.isnan(edge_distance_um(np.ones((4, 4)), 0.1)).all()
