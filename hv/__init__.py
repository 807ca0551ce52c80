"""Console entry points (``hv-straighten``, ``hv-train`` …, see pyproject.toml): each runs the
CLI script of the same stage, so ``hv-train --help`` is ``python train.py --help``."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(rel: str) -> None:
    path = ROOT / rel
    sys.argv[0] = str(path)
    runpy.run_path(str(path), run_name="__main__")


def demo(): _script("scripts/demo.py")                                   # noqa: E704
def make_phantom(): _script("scripts/make_phantom.py")                   # noqa: E704
def straighten(): _script("straighten/straighten_mask_3d.py")            # noqa: E704
def train_classifier(): _script("Attention/train_classifier.py")         # noqa: E704
def cam(): _script("Attention/grad_CAM_3d_sagittal.py")                  # noqa: E704
def train(): _script("train.py")                                         # noqa: E704
def test(): _script("test.py")                                           # noqa: E704
def synthesize(): _script("eval_3d_sagittal_twostage.py")                # noqa: E704
def rhlv(): _script("evaluation/RHLV_quantification.py")                 # noqa: E704
def morphometry(): _script("evaluation/morphometry.py")                  # noqa: E704
def grade(): _script("evaluation/SVM_grading.py")                        # noqa: E704
