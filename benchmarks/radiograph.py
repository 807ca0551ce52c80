"""Radiograph benchmark: DRRs per second (DiffDRR, trilinear vs Siddon, one view vs a batch of
four), 3D landmarks per spine, landmark-network training steps per second and inference seconds
per image (without and with Monte-Carlo dropout), on one phantom spine (T12-L5 + S1, 1 mm).

Ratios are against the first row of each group, measured in the same process. CUDA rows only
when ``torch.cuda.is_available()``.
"""
from __future__ import annotations

import os
import resource

import torch

from benchmarks.timing import median_seconds


def _row(setting, sec, repeats, note, device="cpu", ratio=None, per=1):
    wall, cpu = sec
    return {"benchmark": "radiograph", "setting": setting, "device": device,
            "seconds_median": wall / per, "repeats": repeats, "ratio": ratio,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": f"{note}; per item; CPU time median {cpu / per:.3g} s; "
                    f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"}


class _Rows(list):
    """A list that hands each appended row to ``emit`` as well."""

    def __init__(self, emit=None):
        super().__init__()
        self.emit = emit

    def append(self, row) -> None:
        super().append(row)
        if self.emit:
            self.emit(row)


def run(quick: bool = True, devices=None, size: int = 256, emit=None) -> list:
    """``devices``: where the DRRs and training steps run (default the CPU, and CUDA when present);
    ``size``: detector and network input pixels (256; ``scripts/gpu_check.py --dry_run`` uses
    less); ``emit(row)`` gets each row as it is measured."""
    from phantom.case import render_case
    from radiograph.cohort import channel_names
    from radiograph.drr import Camera, Jitter, LateralRenderer, spine_centre
    from radiograph.landmarks import spine_landmarks
    from radiograph.model import (ModelConfig, PRESETS, build_model, gaussian_targets,
                                  heatmap_loss, predict_points, to_heatmap)
    repeats = 3 if quick else 5
    case = render_case(0, levels=["T12", "L1", "L2", "L3", "L4", "L5"], sacrum=True, anatomy="box")
    rows = _Rows(emit)
    devices = devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        base = None
        for renderer in ("trilinear", "siddon"):
            cam = Camera(renderer=renderer, size=size, pixel_mm=1.2 * 256 / size)
            r = LateralRenderer(case.ct, cam, spine_centre(case.mask), device=dev)
            for n in (1, 4):
                jit = [Jitter()] * n
                sec = median_seconds(lambda: r.render(jit), repeats)
                per = sec[0] / n
                base = base or per
                rows.append(_row(f"DRR {size}x{size} {renderer}, batch {n}", sec, repeats,
                                 f"volume {case.ct.shape}", dev, round(base / per, 2), per=n))
    if not torch.cuda.is_available():
        rows.append({"benchmark": "radiograph", "setting": "DRR on CUDA", "device": "cuda",
                     "note": "not measured (no CUDA device)"})
    sec = median_seconds(lambda: spine_landmarks(case.mask), repeats)
    rows.append(_row("3D landmarks of 6 bodies + S1 (spine_landmarks)", sec, repeats,
                     f"mask {case.mask.shape}"))
    ch = len(channel_names())
    for dev, arch in ((d, a) for d in devices for a in ("unet", "hrnet")):
        cfg = ModelConfig(arch=arch, channels=ch, **PRESETS["cpu"])
        model = build_model(cfg).to(dev)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x = torch.rand(8, 1, size, size, device=dev)
        pts = torch.rand(8, ch, 2, device=dev) * (size - 1)
        vis = torch.ones(8, ch, dtype=torch.bool, device=dev)
        st = getattr(model, "stride", 1)

        def step():
            model.train()
            t = gaussian_targets(to_heatmap(pts, st), vis, size // st, 2.0)
            loss = heatmap_loss(model(x), t, vis)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sec = median_seconds(step, repeats)
        rows.append(_row(f"train step {arch} (cpu preset), batch 8 at {size}", sec, repeats,
                         f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
                         f"{1 / sec[0]:.2f} steps/s", dev))
        one = x[:1]
        s0 = median_seconds(lambda: predict_points(model, one, mc=0), repeats)
        rows.append(_row(f"inference {arch}, one image", s0, repeats, "no MC dropout", dev))
        names = channel_names()
        so = median_seconds(lambda: predict_points(model, one, mc=0, channels=names), repeats)
        rows.append(_row(f"inference {arch}, one image, level-ordered decoding", so, repeats,
                         "predict.py's default (radiograph/ordering.py); untrained weights, so "
                         "many candidate peaks", dev, ratio=round(s0[0] / so[0], 3)))
        sm = median_seconds(lambda: predict_points(model, one, mc=0, channels=names, mirror=True), repeats)
        rows.append(_row(f"inference {arch}, one image, level-ordered, mirror TTA", sm, repeats,
                         "predict.py's and evaluate.py's default (--tta mirror): two forward passes",
                         dev, ratio=round(s0[0] / sm[0], 3)))
        s10 = median_seconds(lambda: predict_points(model, one, mc=10), repeats)
        rows.append(_row(f"inference {arch}, one image, MC dropout x10", s10, repeats,
                         "11 forward passes", dev, ratio=round(s0[0] / s10[0], 3)))
    return list(rows)


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
