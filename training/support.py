"""Pieces of the training loop kept out of train.py: the epoch-aware (distributed) sampler, the
learning-rate rules, dataset configuration from options, periodic evaluation, image grids."""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from training.dataset import GanDataConfig, HealthiVertDataset
from training.gan_eval import batch_metrics, summarise

IMAGE_PANELS = ("real_A", "fake_B", "real_B", "fake_B_coarse")  # [-1, 1]; others are [0, 1]
GRID_PANELS = ("real_A", "fake_B", "real_B", "fake_B_coarse", "fake_B_mask_raw", "normal_vert",
               "mask", "CAM")


class LinearDecay:
    """pix2pix 'linear' rule: factor 1 for ``n_epochs`` epochs, then ``1 - k / (n_decay + 1)``
    after ``k`` decay epochs (reaches 1 / (n_decay + 1) in the last epoch)."""

    def __init__(self, n_epochs: int, n_decay: int):
        self.n_epochs, self.n_decay = n_epochs, n_decay

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - self.n_epochs) / float(self.n_decay + 1)


class CosineDecay(LinearDecay):
    def __call__(self, epoch: int) -> float:
        k = max(0, epoch + 1 - self.n_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(k, self.n_decay + 1) / (self.n_decay + 1)))


def lr_lambda(policy: str, n_epochs: int, n_decay: int):
    """LambdaLR rule per epoch for ``--lr_policy`` (linear, cosine, constant)."""
    if policy == "linear":
        return LinearDecay(n_epochs, n_decay)
    if policy == "cosine":
        return CosineDecay(n_epochs, n_decay)
    return lambda epoch: 1.0


def shard(n: int, world: int, rank: int, order: Optional[List[int]] = None) -> List[int]:
    """DistributedSampler's split: pad ``order`` (default 0..n-1) by wrapping to a multiple of
    ``world`` and take every ``world``-th element from ``rank``."""
    order = list(range(n)) if order is None else order
    total = int(math.ceil(n / world)) * world
    padded = (order * (total // max(n, 1) + 1))[:total]
    return padded[rank:total:world]


class EpochSampler(Sampler):
    """Seeded shuffle per epoch (same order as ``DistributedSampler(seed=seed)``), sharded over
    ranks, yielding ``(epoch, index)`` so persistent workers know the epoch. ``set_epoch(e, skip)``
    skips the first ``skip`` items (exact resume in the middle of an epoch)."""

    def __init__(self, n: int, world: int = 1, rank: int = 0, seed: int = 0):
        self.n, self.world, self.rank, self.seed = n, world, rank, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def _indices(self) -> List[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        return shard(self.n, self.world, self.rank, order)[self.skip:]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return iter([(self.epoch, i) for i in self._indices()])

    def __len__(self) -> int:
        return max(0, int(math.ceil(self.n / self.world)) - self.skip)


def data_config(opts, phase: str, random_slices: bool, vert_class: Optional[str] = None,
                max_grade: Optional[int] = None) -> GanDataConfig:
    """The dataset's few values from the train options."""
    d = opts.data
    return GanDataConfig(
        dataroot=d.dataroot, vertebra_json=d.vertebra_json, phase=phase, mode=d.dataset_mode,
        cam_folder=d.cam_folder, band_mm=d.band_mm, vert_class=vert_class or d.vert_class,
        max_grade=d.healthy_max_grade if max_grade is None else max_grade,
        image_size=d.image_size, fit=d.slice_fit, random_slices=random_slices, seed=opts.run.seed,
        cache_blocks=d.cache_blocks, aug_intensity=d.aug_intensity if random_slices else 0.0,
        aug_shift_px=d.aug_shift_px if random_slices else 0, allow_missing_cam=d.allow_missing_cam,
        coarse_target=d.coarse_target, coronal_band=d.coronal_band)


def visual_grids(vis: Dict[str, torch.Tensor], prefix: str, n: int = 4) -> Dict[str, torch.Tensor]:
    """(3, H', W') grids in [0, 1]: one row per sample, one column per panel."""
    from torchvision.utils import make_grid
    panels = [k for k in GRID_PANELS if k in vis]
    tiles = []
    for i in range(min(n, vis[panels[0]].shape[0])):
        for k in panels:
            t = vis[k][i].float().cpu()
            tiles.append(((t + 1) / 2 if k in IMAGE_PANELS else t).clamp(0, 1))
    grids = {f"{prefix}/panels": make_grid(tiles, nrow=len(panels), padding=2, pad_value=1.0)}
    if "fake_B_local" in vis:
        loc = ((vis["fake_B_local"][:n].float().cpu() + 1) / 2).clamp(0, 1)
        grids[f"{prefix}/fake_B_local"] = make_grid(list(loc), nrow=len(loc), pad_value=1.0)
    return grids


@torch.no_grad()
def evaluate(model, ds: HealthiVertDataset, info, batch_size: int, no_progress: bool = True):
    """Central-slice metrics on ``ds`` (sharded over ranks, gathered on all). Returns
    ``(summary dict, image grids of the first batch)``."""
    idx = shard(len(ds), info.world_size, info.rank)
    loader = DataLoader(ds, batch_size=batch_size, sampler=idx, num_workers=0)
    rows, grids = [], {}
    for batch in tqdm(loader, desc="eval", disable=no_progress or not info.is_main, leave=False):
        out = model.infer(batch)
        rows.extend(batch_metrics(batch, out))
        if not grids:
            grids = visual_grids(model.get_current_visuals(), "eval")
    if info.enabled:
        import torch.distributed as dist
        gathered: List[list] = [None] * info.world_size  # type: ignore[list-item]
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    unique = {r["key"]: r for r in rows}
    return summarise(unique.values()), grids
