"""Train HealthiVert-GAN on straightened vertebra blocks.

    python train.py --dataroot phantom/straight --vertebra_json phantom/vertebra_data.json \
        --name phantom_run --preset paper
    torchrun --nproc_per_node 2 train.py ...           # DDP (gloo on CPU, nccl on CUDA)
    python train.py ... --name phantom_run --continue_train   # exact resume from ckpt/latest.pth

Run folder ``<checkpoints_dir>/<name>/``: options.json, env.json, loss_log.csv, eval_log.csv,
tensorboard/, ckpt/latest.pth and ckpt/epoch_NNNN.pth. One epoch = one random slice of every
training vertebra; the learning rate is constant for ``--n_epochs`` then decays linearly to zero
over ``--n_epochs_decay`` epochs.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm


from training.dataset import HealthiVertDataset
from options.model_options import make_model_config
from options.train_options import TrainOptions, parse_train_options
from layout.runs import checkpoint_path
from utils import checkpoint as ck
from utils.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from utils.errors import UserError, run_cli
from utils.fileio import write_json
from training.run_folder import LossLog, environment, prepare_run_dir
from utils.seed import seed_everything, worker_init_fn
from training.support import (EpochSampler, data_config,
                                 evaluate, lr_lambda, visual_grids)

log = logging.getLogger("train")


class Trainer:
    """The training loop state: model, schedulers, loaders, counters and logs."""

    def __init__(self, opts: TrainOptions, info: DistInfo):
        self.opts, self.info = opts, info
        self.run_dir = Path(opts.run.checkpoints_dir) / opts.run.name
        self.epoch = self.step = self.epoch_step = 0
        self._eval_step = -1
        self._t_start, self._out_of_time = time.perf_counter(), False
        self.train_ds = HealthiVertDataset(data_config(opts, opts.data.phase, True))
        self.eval_ds = self._eval_dataset()
        self.eval_fractured_ds = self._eval_dataset(fractured=True) if self.eval_ds is not None else None
        band_rows = self.train_ds.slice_geometry()[0]
        amp = opts.run.amp and info.device.type == "cuda"
        if opts.run.amp and not amp:
            log.warning("--amp ignored: mixed precision only runs on CUDA")
        self.cfg = make_model_config(opts.model_dict(), opts.data.image_size, band_rows, amp)
        from models.healthivert_model import build_model
        self.model = build_model(self.cfg, info.device)
        if info.enabled:
            self.model.wrap_ddp([info.local_rank] if info.device.type == "cuda" else None)
        rule = lr_lambda(opts.schedule.lr_policy, opts.schedule.n_epochs,
                         opts.schedule.n_epochs_decay)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, rule) for o in self.model.optimizers]
        self.sampler = EpochSampler(len(self.train_ds), info.world_size, info.rank, opts.run.seed)
        self.loader = self._loader(self.train_ds, self.sampler, opts.schedule.batch_size)
        self.logs = LossLog(self.run_dir, enabled=info.is_main)

    def _eval_dataset(self, fractured: bool = False):
        """The eval split's healthy targets (grade <= eval_max_grade), or with ``fractured`` its
        fractured ones (grade > healthy_max_grade), whose SHRM heights are logged against the
        neighbours' height (what a restoration should reach) and their own."""
        o = self.opts
        if not o.schedule.eval_freq:
            return None
        try:
            if fractured:
                cfg = data_config(o, o.schedule.eval_phase, False, vert_class="abnormal",
                                  max_grade=o.data.healthy_max_grade)
            else:
                cfg = data_config(o, o.schedule.eval_phase, False, vert_class="normal",
                                  max_grade=o.schedule.eval_max_grade)
            return HealthiVertDataset(cfg)
        except UserError as exc:
            if not fractured:
                log.warning("no periodic evaluation: %s", exc)
            return None

    def _loader(self, ds, sampler, batch_size: int) -> DataLoader:
        n = self.opts.data.num_threads
        gen = torch.Generator()  # keeps the global RNG untouched by iterator creation
        gen.manual_seed(self.opts.run.seed)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=n,
                          worker_init_fn=worker_init_fn, persistent_workers=n > 0,
                          pin_memory=self.info.device.type == "cuda", generator=gen)

    # ------------------------------------------------------------------ checkpoints
    def resume(self) -> None:
        path = checkpoint_path(self.run_dir, self.opts.run.epoch)
        state = ck.load_checkpoint(path, map_location=self.info.device)
        ck.load_model_state(self.model, state, path)
        ck.restore_training(state, self.schedulers, None)
        self.epoch, self.step, self.epoch_step = state["epoch"], state["step"], state["epoch_step"]
        changed = _changed_options(state.get("options", {}), self.opts.to_dict())
        if changed:
            log.warning("options differ from the checkpoint's: %s", ", ".join(changed))
        log.info("resumed %s: epoch %d, step %d", path, self.epoch, self.step)

    def save(self, numbered: bool = False) -> None:
        if not self.info.is_main:
            return
        state = ck.make_checkpoint(self.model.state_dict(), self.schedulers, None, self.epoch,
                                   self.step, self.epoch_step, self.opts.to_dict(),
                                   {"model_config": self.cfg.to_dict()})
        ck.save_checkpoint(state, checkpoint_path(self.run_dir, "latest"))
        if numbered:
            ck.save_checkpoint(state, checkpoint_path(self.run_dir, str(self.epoch)))

    # ------------------------------------------------------------------ loop
    @property
    def total_epochs(self) -> int:
        return self.opts.schedule.n_epochs + self.opts.schedule.n_epochs_decay

    def _done(self) -> bool:
        ms = self.opts.schedule.max_steps
        return self._out_of_time or (bool(ms) and self.step >= ms)

    def _check_time(self) -> None:
        """--max_minutes: stop when any rank is over budget (checked at sync points only)."""
        mm = self.opts.schedule.max_minutes
        if mm > 0:
            over = torch.tensor(float(time.perf_counter() - self._t_start > 60.0 * mm),
                                device=self.info.device)
            self._out_of_time = bool(all_reduce_mean(over, self.info) > 0)

    def run(self) -> None:
        while self.epoch < self.total_epochs and not self._done():
            finished = self.train_epoch()
            if not finished:
                break
            self.epoch += 1
            self.epoch_step = 0
            for s in self.schedulers:
                s.step()
            o = self.opts.schedule
            self.save(numbered=o.save_epoch_freq > 0 and self.epoch % o.save_epoch_freq == 0)
            if o.eval_freq and self.epoch % o.eval_freq == 0:
                self.evaluate()
        self.save()
        if self.opts.schedule.eval_freq and self._eval_step != self.step:
            self.evaluate()  # the final weights are always evaluated once
        self.logs.close()

    def train_epoch(self) -> bool:
        """One epoch (or its remainder after a resume). False when --max_steps stopped it."""
        o = self.opts.schedule
        self.train_ds.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, skip=self.epoch_step * o.batch_size)
        sums, n_acc, wait, t_all = {}, 0, 0.0, time.perf_counter()
        bar = tqdm(total=math.ceil(len(self.sampler) / o.batch_size) + self.epoch_step,
                   initial=self.epoch_step, desc=f"epoch {self.epoch + 1}/{self.total_epochs}",
                   disable=self.opts.run.no_progress or not self.info.is_main, leave=False)
        t0 = time.perf_counter()
        for batch in self.loader:
            wait += time.perf_counter() - t0
            self.model.set_input(batch)
            self.model.optimize_parameters()
            self.step += 1
            self.epoch_step += 1
            for k, v in self.model.get_current_losses().items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            n_acc += 1
            bar.update(1)
            if self.step % o.print_freq == 0:
                self._check_time()
            if self.step % o.print_freq == 0 or self._done():
                self._flush(sums, n_acc, wait / max(time.perf_counter() - t_all, 1e-9), bar)
                sums, n_acc, wait, t_all = {}, 0, 0.0, time.perf_counter()
            if self.info.is_main and o.display_freq and self.step % o.display_freq == 0:
                self.logs.images(self.step, visual_grids(self.model.get_current_visuals(), "train"))
            if self._done():
                bar.close()
                return False
            t0 = time.perf_counter()
        if n_acc:
            self._flush(sums, n_acc, wait / max(time.perf_counter() - t_all, 1e-9), bar)
        bar.close()
        return True

    def _flush(self, sums: dict, n: int, wait_share: float, bar) -> None:
        """Sync the accumulated losses once (one all-reduce under DDP) and log them."""
        names = sorted(sums)
        vals = all_reduce_mean(torch.stack([sums[k].float() for k in names]) / n, self.info)
        losses = dict(zip(names, vals.cpu().tolist()))
        lr = self.model.optimizers[0].param_groups[0]["lr"]
        if self.info.is_main:
            self.logs.scalars(self.step, {**losses, "lr": lr, "data_wait_share": wait_share},
                              "train")
            self.logs.row({"epoch": self.epoch + 1, "step": self.step, "lr": lr,
                           "data_wait_share": round(wait_share, 4),
                           **{k: round(v, 6) for k, v in losses.items()}})
            bar.set_postfix(G=f"{losses.get('G', float('nan')):.3f}",
                            D=f"{losses.get('D', float('nan')):.3f}")

    def evaluate(self) -> None:
        self._eval_step = self.step
        if self.eval_ds is None:
            return
        summary, grids = evaluate(self.model, self.eval_ds, self.info, self.opts.schedule.batch_size,
                                  self.opts.run.no_progress)
        if self.eval_fractured_ds is not None:
            frac, _ = evaluate(self.model, self.eval_fractured_ds, self.info,
                               self.opts.schedule.batch_size, self.opts.run.no_progress)
            summary.update({f"fractured_{k}": frac[k] for k in FRACTURED_EVAL_KEYS})
        if self.info.is_main:
            log.info("eval epoch %d: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()),
                     self.epoch)
            self.logs.scalars(self.step, summary, "eval")
            self.logs.images(self.step, grids)
            _append_eval(self.run_dir, {"epoch": self.epoch, "step": self.step, **summary})


# what the periodic evaluation logs for the eval split's fractured targets: the SHRM height
# (rows) against their own (fractured) height and the neighbours' (healthy) one
FRACTURED_EVAL_KEYS = ("n", "height_true", "height_cont", "height_ref", "height_error_ref_pct",
                       "height_gain_pct")


def _changed_options(old: dict, new: dict) -> list:
    ignore = {"continue_train", "epoch", "overwrite", "max_steps", "no_progress", "num_threads"}
    return sorted(k for k in new if k in old and k not in ignore and old[k] != new[k])


def _append_eval(run_dir: Path, row: dict) -> None:
    import csv
    path = run_dir / "eval_log.csv"
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def _check_inputs(opts: TrainOptions) -> None:
    if not opts.data.dataroot:
        raise UserError("--dataroot is required (root of the straightened blocks)")
    if not Path(opts.data.dataroot).is_dir():
        raise UserError("--dataroot folder not found", opts.data.dataroot)
    if not opts.data.vertebra_json:
        raise UserError("--vertebra_json is required (split/grade JSON)")
    if not Path(opts.data.vertebra_json).is_file():
        raise UserError("--vertebra_json file not found", opts.data.vertebra_json)


def train(opts: TrainOptions, info: DistInfo) -> "Trainer":
    """Set up the run folder, build everything, resume if asked, train. Returns the trainer
    (``.model``, ``.run_dir``, ``.step`` ...)."""
    _check_inputs(opts)
    run_dir = Path(opts.run.checkpoints_dir) / opts.run.name
    if info.is_main:
        prepare_run_dir(run_dir, opts.run.continue_train, opts.run.overwrite)
    barrier(info)
    seed_everything(opts.run.seed)
    trainer = Trainer(opts, info)
    if opts.run.continue_train:
        trainer.resume()
    elif opts.run.init_generator:
        from synthesis.model_io import init_generator
        init_generator(trainer.model, opts.run.init_generator, opts.data.dataset_mode)
    if info.is_main:
        counts = trainer.model.parameter_counts()
        write_json(run_dir / "options.json", {**opts.to_dict(), "band_rows": trainer.cfg.band_rows,
                                              "model_config": trainer.cfg.to_dict()})
        write_json(run_dir / "env.json", {**environment(), "world_size": info.world_size,
                                          "device": str(info.device), "parameters": counts})
    trainer.run()
    barrier(info)
    return trainer


def main(argv=None) -> int:
    opts = parse_train_options(argv)
    info = init_distributed(opts.run.device)
    try:
        trainer = train(opts, info)
        if info.is_main:
            log.info("done: %d steps, %d epochs -> %s", trainer.step, trainer.epoch, trainer.run_dir)
    finally:
        cleanup(info)
    return 0


if __name__ == "__main__":
    run_cli(main)
