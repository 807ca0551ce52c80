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


def run(quick: bool = True) -> list:
    from phantom.case import render_case
    from radiograph.cohort import channel_names
    from radiograph.drr import Camera, Jitter, LateralRenderer, spine_centre
    from radiograph.landmarks import spine_landmarks
    from radiograph.model import (ModelConfig, PRESETS, build_model, gaussian_targets,
                                  heatmap_loss, predict_points, to_heatmap)
    repeats = 3 if quick else 5
    case = render_case(0, levels=["T12", "L1", "L2", "L3", "L4", "L5"], sacrum=True)
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        base = None
        for renderer in ("trilinear", "siddon"):
            r = LateralRenderer(case.ct, Camera(renderer=renderer), spine_centre(case.mask), device=dev)
            for n in (1, 4):
                jit = [Jitter()] * n
                sec = median_seconds(lambda: r.render(jit), repeats)
                per = sec[0] / n
                base = base or per
                rows.append(_row(f"DRR 256x256 {renderer}, batch {n}", sec, repeats,
                                 f"volume {case.ct.shape}", dev, round(base / per, 2), per=n))
    if not torch.cuda.is_available():
        rows.append({"benchmark": "radiograph", "setting": "DRR on CUDA", "device": "cuda",
                     "note": "not measured (no CUDA device)"})
    sec = median_seconds(lambda: spine_landmarks(case.mask), repeats)
    rows.append(_row("3D landmarks of 6 bodies + S1 (spine_landmarks)", sec, repeats,
                     f"mask {case.mask.shape}"))
    ch = len(channel_names())
    for arch in ("unet", "hrnet"):
        cfg = ModelConfig(arch=arch, channels=ch, **PRESETS["cpu"])
        model = build_model(cfg)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x = torch.rand(8, 1, 256, 256)
        pts = torch.rand(8, ch, 2) * 255
        vis = torch.ones(8, ch, dtype=torch.bool)
        st = getattr(model, "stride", 1)

        def step():
            model.train()
            t = gaussian_targets(to_heatmap(pts, st), vis, 256 // st, 2.0)
            loss = heatmap_loss(model(x), t, vis)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sec = median_seconds(step, repeats)
        rows.append(_row(f"train step {arch} (cpu preset), batch 8 at 256", sec, repeats,
                         f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
                         f"{1 / sec[0]:.2f} steps/s"))
        one = x[:1]
        s0 = median_seconds(lambda: predict_points(model, one, mc=0), repeats)
        rows.append(_row(f"inference {arch}, one image", s0, repeats, "no MC dropout"))
        s10 = median_seconds(lambda: predict_points(model, one, mc=10), repeats)
        rows.append(_row(f"inference {arch}, one image, MC dropout x10", s10, repeats,
                         "11 forward passes", ratio=round(s0[0] / s10[0], 3)))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
