"""Lateral digitally reconstructed radiographs (DRRs) with DiffDRR, and the same camera for
landmarks.

DiffDRR (MIT, PyTorch; Gopalakrishnan & Golland) casts cone-beam rays from a point source through
the CT to a flat detector (Siddon's exact ray-voxel intersections, or trilinear sampling) on CPU
or CUDA, batched over poses, and projects 3D points with the same camera
(``DRR.perspective_projection``). We use it as is and own only the parts around it:

* **World frame**: the CT is placed so that the spine's centre (mean vertebra centroid) is the
  world origin; the DiffDRR subject is built with that affine (no recentring), so 3D landmarks
  (world mm) project with no bookkeeping.
* **Attenuation**: μ = μ_water · max(0, 1 + HU/1000), with bone (above ``bone_hu``) enhanced by
  ``bone_gain`` (default 3: the photo-electric share of bone at the 60-80 kVp of spine films). DiffDRR's own
  conversion rescales each volume by its own min/max, so two scans of one patient would not
  look alike; ours is absolute.
* **Camera**: lateral view (the source on the patient's side ``side``), source–detector
  distance ``sdd`` and source–isocentre distance ``sid`` (magnification at the spine
  sdd / sid), ``size`` × ``size`` pixels of ``pixel_mm`` at the detector; pose jitter (rotations
  about the three axes, translations) drawn per image.
* **Image**: the line integral ∫μ ds, unsharp-masked as digital radiographs are displayed,
  scaled between percentiles of the patient's pixels, a film shoulder log(1 + k x), then
  optional gamma, noise and collimation (edges set to the background level).

Installed with ``pip install --no-deps diffdrr==0.6.1`` (scripts/setup_env.sh): its declared
dependency ``pyvista[all]`` (VTK, Jupyter; ~130 packages) serves only its 3D visualisation, which
this project never imports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from data.volume import Volume
from utils.errors import UserError

MU_WATER = 0.02          # 1/mm, ~ 70 keV
# diffdrr.data.read(orientation="AP"): the C-arm rotated about x by 90 degrees
_AP_REORIENT = torch.tensor([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
                            dtype=torch.float32)


@dataclass(frozen=True)
class Camera:
    sdd: float = 1200.0          # source -> detector (mm)
    sid: float = 1000.0          # source -> isocentre (spine centre) (mm)
    size: int = 256              # detector pixels per side
    pixel_mm: float = 1.2        # detector pixel (mm); at the spine pixel_mm * sid / sdd
    side: str = "left"           # source on the patient's left: anterior to the image's left
    renderer: str = "trilinear"   # or "siddon" (exact, ~5x slower on CPU)

    @property
    def magnification(self) -> float:
        return self.sdd / self.sid

    @property
    def mm_at_spine(self) -> float:
        """Pixel size projected back to the isocentre (mm)."""
        return self.pixel_mm / self.magnification


@dataclass(frozen=True)
class Jitter:
    rot_deg: Tuple[float, float, float] = (0.0, 0.0, 0.0)   # about world x (tilt), y, z
    shift_mm: Tuple[float, float, float] = (0.0, 0.0, 0.0)

    @staticmethod
    def draw(rng: np.random.Generator, rot_deg: float = 5.0, shift_mm: float = 15.0) -> "Jitter":
        return Jitter(tuple(rng.uniform(-rot_deg, rot_deg, 3)),
                      tuple(rng.uniform(-shift_mm, shift_mm, 3)))


@dataclass(frozen=True)
class Look:
    """Film appearance: contrast k, gamma, Gaussian noise sd, collimation margin (fraction),
    unsharp masking (strength, Gaussian sd in pixels)."""
    k: float = 0.35
    gamma: float = 1.0
    noise: float = 0.0
    collimate: float = 0.0
    unsharp: float = 0.8         # fraction of the blurred image subtracted (0: none)
    unsharp_px: float = 12.0

    @staticmethod
    def draw(rng: np.random.Generator) -> "Look":
        return Look(k=float(rng.uniform(0.25, 0.5)), gamma=float(rng.uniform(0.8, 1.25)),
                    noise=float(rng.uniform(0.0, 0.03)),
                    collimate=float(rng.uniform(0.0, 0.12)) if rng.random() < 0.5 else 0.0,
                    unsharp=float(rng.uniform(0.5, 0.9)), unsharp_px=float(rng.uniform(8, 20)))


def attenuation(hu: np.ndarray, bone_hu: float = 200.0, bone_gain: float = 3.0) -> np.ndarray:
    """μ (1/mm) from HU."""
    hu = np.asarray(hu, dtype=np.float32)
    mu = MU_WATER * np.maximum(0.0, 1.0 + hu / 1000.0)
    extra = np.maximum(0.0, hu - bone_hu) / 1000.0 * MU_WATER * (bone_gain - 1.0)
    return (mu + extra).astype(np.float32)


def spine_centre(mask: Volume) -> np.ndarray:
    """Mean of the vertebra centroids (world mm); UserError when the mask has no vertebra."""
    from data.centroids import centroids_from_mask
    from spine.anatomy import VERTEBRA_LABELS
    c = [v for l, v in centroids_from_mask(np.asarray(mask.array)).items() if l in VERTEBRA_LABELS]
    if not c:
        raise UserError("no vertebra label (VerSe ids 1-25, 28) in the mask", mask.path)
    return mask.voxel_to_world(np.asarray(c)).mean(0)


class LateralRenderer:
    """DRRs of one CT from lateral poses, and the projection of world points with the same
    camera. ``centre``: world mm placed at the isocentre (default: the spine's centre)."""

    def __init__(self, ct: Volume, camera: Camera = Camera(), centre: Optional[np.ndarray] = None,
                 device: Optional[str] = None):
        from diffdrr.drr import DRR
        from torchio import ScalarImage, Subject
        if np.asarray(ct.array).ndim != 3:
            raise UserError(f"CT must be 3D, got shape {np.shape(ct.array)}", ct.path)
        self.camera = camera
        self.centre = np.zeros(3) if centre is None else np.asarray(centre, float)
        aff = ct.affine.copy()
        aff[:3, 3] -= self.centre
        vol = ScalarImage(tensor=torch.as_tensor(np.asarray(ct.array, np.float32))[None],
                          affine=aff)
        density = ScalarImage(tensor=torch.as_tensor(attenuation(ct.array))[None], affine=aff)
        # the Subject that diffdrr.data.read builds, with our density and no recentring
        subject = Subject(volume=vol, mask=None, orientation="AP", reorient=_AP_REORIENT.clone(),
                          density=density, fiducials=None)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.drr = DRR(subject, sdd=camera.sdd, height=camera.size, delx=camera.pixel_mm,
                       renderer=camera.renderer).to(self.device)

    def pose(self, jitter: Sequence[Jitter]):
        """DiffDRR poses for a batch of jitters (lateral view, source at ``sid``)."""
        from diffdrr.pose import convert
        sign = 1.0 if self.camera.side == "left" else -1.0
        rot, xyz = [], []
        for j in jitter:
            r = np.radians(j.rot_deg)
            rot.append([sign * np.pi / 2 + r[2], r[0], r[1]])
            xyz.append([j.shift_mm[0], self.camera.sid + j.shift_mm[1], j.shift_mm[2]])
        return convert(torch.tensor(rot, dtype=torch.float32, device=self.device),
                       torch.tensor(xyz, dtype=torch.float32, device=self.device),
                       parameterization="euler_angles", convention="ZXY")

    @torch.no_grad()
    def render(self, jitter: Sequence[Jitter] = (Jitter(),)) -> np.ndarray:
        """(B, size, size) line integrals ∫μ ds (dimensionless)."""
        img = self.drr(self.pose(jitter))
        return img[:, 0].float().cpu().numpy()

    @torch.no_grad()
    def project(self, world_mm: np.ndarray, jitter: Sequence[Jitter] = (Jitter(),)) -> np.ndarray:
        """(B, N, 2) pixel (x = column, y = row) of (N, 3) world points."""
        pts = torch.as_tensor(np.asarray(world_mm, np.float32) - self.centre.astype(np.float32),
                              device=self.device)
        pts = pts.reshape(1, -1, 3).expand(len(jitter), -1, -1)
        return self.drr.perspective_projection(self.pose(jitter), pts).cpu().numpy()


def film(line_integral: np.ndarray, look: Look = Look(), rng: Optional[np.random.Generator] = None
         ) -> np.ndarray:
    """Film-like grey levels in [0, 1] (bone bright) from ∫μ ds."""
    li = np.asarray(line_integral, np.float32)
    if look.unsharp:     # digital radiographs are shown after unsharp masking (edges of bone)
        from scipy.ndimage import gaussian_filter
        sig = (0,) * (li.ndim - 2) + (look.unsharp_px,) * 2
        li = li - look.unsharp * gaussian_filter(li, sig)
    inside = li[li > li.min() + 0.25 * (li.max() - li.min())]      # the patient, not the air
    lo, hi = np.percentile(inside, 2.0), np.percentile(inside, 99.9)
    img = np.clip((li - lo) / max(hi - lo, 1e-6), 0, 1)
    img = np.log1p(look.k * 10 * img) / np.log1p(look.k * 10)       # film shoulder
    img = img ** look.gamma
    if look.noise and rng is not None:
        img = np.clip(img + rng.normal(0, look.noise, img.shape).astype(np.float32), 0, 1)
    if look.collimate:
        n = img.shape[-1]
        m = int(round(look.collimate * n))
        if m:
            bg = float(np.percentile(img, 1))
            img = img.copy()
            img[..., :m, :] = bg
            img[..., -m:, :] = bg
    return img.astype(np.float32)
