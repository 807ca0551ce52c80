"""Training cases and random training patches for the three stages.

A case (CT + VerSe label map, any orientation and spacing) is resampled once per stage onto the
stage's canonical RAS grid (:mod:`segmentation.grid`) and kept in memory. Each training patch is
then drawn in one resampling step that crops, rotates (±``rotate_deg``) and scales (±``scale``)
about a chosen centre, so the centroids move analytically with it. Its image is either the real
HU (with Payer et al.'s intensity shift and scale) or, with probability ``p_synth``, an image
generated from the label map with random per-class intensities (SynthSeg's idea, through TorchIO's
``RandomLabelsToImage``, ``RandomBiasField``, ``RandomGamma``, ``RandomBlur``,
``RandomAnisotropy`` and ``RandomNoise``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from data.centroids import centroids_from_mask
from data.splits import read_vertebra_json, parse_key
from data.volume import Volume
from layout.raw import find_cases
from segmentation.grid import Grid, canonical_grid, normalise_ct, to_grid
from segmentation.heatmaps import CHANNEL_OF
from straighten.cases import load_case
from utils.errors import UserError

AIR_HU = -1024.0


@dataclass
class StageCase:
    """One case on a stage's grid: HU image, label map, centroids (grid voxel indices)."""
    name: str
    split: str
    grid: Grid
    hu: np.ndarray
    labels: np.ndarray
    centroids: Dict[int, np.ndarray] = field(default_factory=dict)


def case_splits(root: Path) -> Dict[str, str]:
    """``{case: split}`` from a cohort's ``vertebra_data.json`` (empty when there is none)."""
    vj = Path(root) / "vertebra_data.json"
    if not vj.is_file():
        return {}
    out = {}
    for split, keys in read_vertebra_json(vj).items():
        for k in keys:
            out[parse_key(k)[0]] = split
    return out


def load_cases(roots: Sequence, spacing: float, splits: Sequence[str] = ("train", "val"),
               label_scheme: str = "verse") -> List[StageCase]:
    """Every case with a CT under the cohort ``roots`` whose split is in ``splits`` (a cohort
    without a split file counts as train), on the canonical grid of ``spacing`` mm."""
    out = []
    for root in roots:
        sp = case_splits(Path(root))
        files = find_cases(root)
        if not files:
            raise UserError("no cases (label maps) found", root)
        for f in files:
            split = sp.get(f.case, "train")
            if split not in splits or f.ct is None:
                continue
            lab, ct, _, _ = load_case(f, label_scheme)
            out.append(stage_case(f.case, split, ct, lab, spacing))
    return out


def stage_case(name: str, split: str, ct: Volume, lab: Volume, spacing: float) -> StageCase:
    grid = canonical_grid(ct, spacing)
    hu = to_grid(ct, grid, order=1, cval=AIR_HU, smooth_mm=0.75)
    labels = to_grid(lab, grid, order=0).astype(np.uint8)
    labels[~np.isin(labels, list(CHANNEL_OF))] = 0
    return StageCase(name, split, grid, hu.astype(np.float32), labels,
                     {int(k): v for k, v in centroids_from_mask(labels).items()})


@dataclass
class Augment:
    rotate_deg: float = 15.0
    scale: float = 0.15
    shift_vox: float = 4.0
    p_synth: float = 0.5
    intensity: bool = True


def _transform(rng, aug: Optional[Augment]) -> np.ndarray:
    """3x3 patch-index -> case-index linear map (rotation x isotropic scale)."""
    if aug is None:
        return np.eye(3)
    rot = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3) * np.deg2rad(rng.uniform(0, aug.rotate_deg)))
    return rot.as_matrix() * rng.uniform(1 - aug.scale, 1 + aug.scale)


def sample_patch(case: StageCase, centre: np.ndarray, patch, rng, aug: Optional[Augment]):
    """(HU patch, label patch, {label: centroid in patch voxels}) centred on ``centre`` (case voxels)."""
    m = _transform(rng, aug)
    half = (np.asarray(patch) - 1) / 2.0
    offset = np.asarray(centre, float) - m @ half
    hu = ndimage.affine_transform(case.hu, m, offset=offset, output_shape=tuple(patch), order=1,
                                  mode="constant", cval=AIR_HU, prefilter=False)
    lab = ndimage.affine_transform(case.labels, m, offset=offset, output_shape=tuple(patch), order=0,
                                   mode="constant", cval=0, prefilter=False)
    inv = np.linalg.inv(m)
    cents = {k: inv @ (np.asarray(v) - offset) for k, v in case.centroids.items()}
    return hu, lab, cents


def cut_field_of_view(hu: np.ndarray, labels: np.ndarray, centroids: Dict[int, np.ndarray], rng,
                      margin: float = 0.15):
    """The patch as a scan that ends inside it: above a random axial plane, below one, or both
    (a third each), everything becomes air and label 0, and the vertebrae whose centroid lies
    beyond a plane leave the targets. A vertebra cut through with its centroid kept stays a
    target, as in a real scan's first and last vertebrae. The planes fall in the inner
    ``1 - 2 * margin`` of the patch's third axis (S in the canonical grid). Without this the
    vertebra stage learnt which level a scan starts at from its training cohorts (T1, T8 or C3)
    and named the top vertebrae of any scan by it. Returns new arrays; the inputs are not changed."""
    nz = hu.shape[2]
    lo_z, hi_z = margin * (nz - 1), (1 - margin) * (nz - 1)
    side = rng.integers(3)                              # 0: top cut, 1: bottom cut, 2: both
    top = rng.uniform(lo_z, hi_z) if side in (0, 2) else np.inf
    bottom = rng.uniform(lo_z, hi_z) if side in (1, 2) else -np.inf
    if side == 2 and bottom > top:
        top, bottom = bottom, top
    z = np.arange(nz)
    gone = (z > top) | (z < bottom)
    hu, labels = hu.copy(), labels.copy()
    hu[:, :, gone] = AIR_HU
    labels[:, :, gone] = 0
    kept = {k: v for k, v in centroids.items() if bottom <= v[2] <= top}
    return hu, labels, kept


def tissue_classes(hu: np.ndarray, lab: np.ndarray, rng) -> np.ndarray:
    """Classes for label -> image synthesis: air, fat, soft tissue, other bone from the HU, and the
    vertebrae (cortex and marrow apart; one class for all vertebrae or one per level, at random)."""
    cls = np.zeros(hu.shape, np.int16)
    cls[hu > -400] = 1
    cls[hu > -30] = 2
    cls[hu > 200] = 3
    vert = lab > 0
    dense = hu > 500
    per_level = rng.random() < 0.5
    base = np.where(per_level, 10 + 2 * lab.astype(np.int16), 10)
    cls[vert] = (base + dense)[vert]
    return cls


def synth_image(hu: np.ndarray, lab: np.ndarray, rng, seed: int) -> np.ndarray:
    """An image in [-1, 1] generated from the tissue classes with random intensities, bias field,
    gamma, blur, anisotropic resolution and noise (TorchIO)."""
    import torch
    import torchio as tio
    torch.manual_seed(seed)
    cls = tissue_classes(hu, lab, rng)
    subj = tio.Subject(cls=tio.LabelMap(tensor=torch.from_numpy(cls.astype(np.int64))[None]))
    tf = tio.Compose([
        tio.RandomLabelsToImage(label_key="cls", image_key="img", default_mean=(0.0, 1.0),
                                default_std=(0.0, 0.08), discretize=True),
        tio.RandomBiasField(coefficients=0.4, p=0.7),
        tio.RandomBlur(std=(0.0, 1.0), p=0.5),
        tio.RandomAnisotropy(downsampling=(1.0, 3.0), p=0.3),
        tio.RandomGamma(log_gamma=0.3, p=0.5),
        tio.RandomNoise(std=(0.0, 0.05), p=0.7),
    ])
    img = tf(subj)["img"].data[0].numpy().astype(np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip(2 * (img - lo) / max(hi - lo, 1e-6) - 1, -1, 1).astype(np.float32)


def patch_image(hu: np.ndarray, lab: np.ndarray, rng, aug: Optional[Augment]) -> np.ndarray:
    """The network input for a patch: real HU (randomly shifted/scaled) or a synthetic image."""
    if aug is not None and aug.p_synth > 0 and rng.random() < aug.p_synth:
        return synth_image(hu, lab, rng, int(rng.integers(2 ** 31)))
    img = normalise_ct(hu)
    if aug is not None and aug.intensity:
        img = np.clip(img * rng.uniform(0.75, 1.25) + rng.uniform(-0.25, 0.25), -1, 1)
    return img.astype(np.float32)
