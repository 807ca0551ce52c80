"""The periodic evaluation's height diagnostics (issue #12): the neighbours' height read from a
training sample, and the SHRM height logged against it."""
from __future__ import annotations

import numpy as np
import torch

from data.sample import one_sample
from training.gan_eval import batch_metrics, neighbour_height_rows


def _slice():
    lab = np.zeros((96, 48), np.int32)
    lab[24:36, 10:38] = 19      # upper neighbour: 12 rows
    lab[42:50, 10:38] = 20      # fractured target: 8 rows
    lab[56:70, 10:38] = 21      # lower neighbour: 14 rows
    img = np.where(lab > 0, 0.4, -0.5).astype(np.float32)
    return img, lab


def _metrics(img, lab, height_pred: float, height_cont: float):
    """batch_metrics of a one-sample batch of the slice, with the given SHRM heights."""
    s = one_sample(img, lab, None, 20, 24, 10, 0.0, "c_20", 0)
    batch = {k: (v[None] if isinstance(v, torch.Tensor) and v.dim() > 0 else
                 (torch.as_tensor([v]) if not isinstance(v, str) else [v])) for k, v in s.items()}
    out = {"fake_B": batch["B"], "seg": batch["A_mask"], "height_pred": torch.tensor([height_pred]),
           "height_cont": torch.tensor([height_cont])}
    return batch_metrics(batch, out)


def test_neighbour_height_is_read_outside_the_band():
    img, lab = _slice()
    s = one_sample(img, lab, None, 20, 24, 10, 0.0, "c_20", 0)
    ref = neighbour_height_rows(s["normal_vert"][0].numpy(), int(s["band_top"]), 24)
    assert ref == 13.0                                   # (12 + 14) / 2
    assert np.isnan(neighbour_height_rows(np.zeros((64, 48)), 20, 24))


def test_batch_metrics_log_height_against_neighbours_and_own():
    img, lab = _slice()
    (row,) = _metrics(img, lab, 13.0, 13.0)
    assert row["height_true"] == 8 and row["height_ref"] == 13.0
    assert row["height_error_ref_pct"] == 0.0
    assert row["height_gain_pct"] == 100.0 * 5 / 8
    assert abs(row["ref_error_pct"] - 62.5) < 1e-9


def test_height_error_is_not_floored():
    """An under-predicting head (11 rows for a 12-row healthy target) scores 8.3 %, not 0 (the
    composite's H is floored at h, which hid every under-prediction)."""
    img, lab = _slice()
    lab = np.where(lab == 20, 0, lab)
    lab[40:52, 10:38] = 20
    (row,) = _metrics(img, lab, 12.0, 11.0)
    assert abs(row["height_error_pct"] - 100 / 12) < 1e-9 and row["height_error_composite_pct"] == 0
