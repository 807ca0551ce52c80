"""CAM benchmark: seconds per vertebra for the batched CAM of one straightened block
(256 x 256 x 64, target spanning ~40 sagittal slices) on CPU, untrained weights (timing only).

``run(quick=True)``: the tiny CPU network (2D and 3D); full run adds SE-ResNet50 as in the paper.
"""
from __future__ import annotations

import resource
import statistics
import time

import numpy as np
import torch

from Attention.cam import cam_for_block, make_cam
from Attention.classifier import build_classifier, cam_target_layer
from Attention.dataset import Preproc, target_slices
from Attention.synthetic import synthetic_block


def _time_setting(arch: str, pre: Preproc, method: str, repeats: int, batch_size: int = 32) -> dict:
    rng = np.random.default_rng(0)
    ct, lab = synthetic_block(rng, 2, 20, (256, 256, 64))
    target = lab == 20
    torch.manual_seed(0)
    net = build_classifier(arch, pre.dims).eval()
    cam = make_cam(net, cam_target_layer(net), method)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cam_for_block(cam, ct, target, (1.0, 1.0, 1.0), pre, batch_size=batch_size)
        times.append(time.perf_counter() - t0)
    n_slices = len(target_slices(target))
    return {"benchmark": "cam_per_vertebra",
            "setting": f"{arch} {pre.dims}D in {pre.image_size}px crop {pre.crop or 256} {method} "
                       f"batch {batch_size}",
            "device": "cpu", "seconds_median": statistics.median(times), "repeats": repeats,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": f"{n_slices} target slices (2D) / whole block (3D); torch threads "
                    f"{torch.get_num_threads()}; includes HU->unit, resize, upsample; "
                    "peak = process RSS (~0.9 GB of it is imports)"}


def run(quick: bool = True) -> list:
    settings = [("resnet_tiny", Preproc(2, 112, 128), "gradcam++"),
                ("resnet_tiny", Preproc(3, 112, 128), "gradcam++")]
    if not quick:
        settings += [("resnet_tiny", Preproc(2, 112, 128), "eigencam"),
                     ("seresnet_small", Preproc(2, 256, None), "gradcam++"),
                     ("seresnet50", Preproc(2, 256, None), "gradcam++")]
    rows = [_time_setting(arch, pre, method, repeats=3) for arch, pre, method in settings]
    if not torch.cuda.is_available():
        rows.append({"benchmark": "cam_per_vertebra", "setting": "any", "device": "cuda",
                     "seconds_median": None, "repeats": 0, "peak_mem_mb": None,
                     "note": "not measured (no GPU on this machine)"})
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
