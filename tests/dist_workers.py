"""What the 2-process gloo tests run in each process (spawned by torch.multiprocessing, so importable here),
and the single-process reference they are compared with: the same recipe parts, one step."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from xmcfit.plan.memory import reprice
from xmcfit.rundir import DataOptions, prepare_run_dir
from xmcfit.seed import seed_everything
from xmcfit.train.data import load_train_data
from xmcfit.train.epoch import epoch_batches
from xmcfit.train.loop import OneDevice
from xmcfit.train.optim import set_learning_rates
from xmcfit.train.step import accumulate_gradients, gradients_finite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_devices(plan, n_devices: int):
    """`plan` over n_devices with the same effective batch: micro_batch / n_devices per device, repriced."""
    t = plan.training
    return reprice(replace(plan, n_devices=n_devices,
                           training=replace(t, micro_batch=t.micro_batch // n_devices)))


def join(rank: int, world_size: int, port: int):
    """Join a gloo group as torchrun's environment would describe it; the World of this process."""
    from xmcfit.train.ranks import init_process_group
    from xmcfit.train.world import World

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    world = World.from_env()
    init_process_group(world, torch.device("cpu"))
    return world


def one_step(plan, run_dir: Path, data, placement, *, eval_encoder: bool) -> dict:
    """The first optimizer step of `plan` through `placement`: loss, the encoder's and heads' gradients
    after they met, the classifier's state after the update, and the TF-IDF side's (when the plan has one)
    value gradient and state after the update. Dropout off (`eval_encoder` also turns
    off the dropout inside a transformer), so one process and several see the same numbers."""
    seed_everything(plan.seed)
    parts = placement.setup(plan, data, torch.device("cpu"), resume=False)
    parts.model.train()
    if eval_encoder:
        parts.model.encoder.eval()
    t = plan.training
    batches = epoch_batches(data.dataset.n_points, t.micro_batch * placement.n_ranks, plan.seed, 0)
    collate = placement.collate(data.collate)
    micro = [collate(rows) for rows in batches[: t.grad_accum]]
    set_learning_rates(parts.optimizers.all(), parts.schedule.lr_multiplier(0))
    loss, main, aux, finite = accumulate_gradients(parts, micro, parts.schedule.aux_weight(0))
    model_parts = parts.model.parts()
    named = dict(parts.model.named_parameters())
    ids = {id(p) for p in model_parts.encoder + model_parts.heads}
    grads = {name: p.grad.detach().clone() for name, p in named.items() if id(p) in ids and p.grad is not None}
    side = parts.model.tfidf
    side_grad = side.layer.values.grad.detach().clone() if side is not None else None
    finite = finite and gradients_finite(parts)
    parts.optimizers.step()
    classifier = {k: v.detach().clone() for k, v in parts.model.classifier.state_dict().items()}
    side_state = {k: v.detach().clone() for k, v in side.state_dict().items()} if side is not None else None
    return {"loss": loss, "main": main, "aux": aux, "finite": finite, "grads": grads, "classifier": classifier,
            "side_grad": side_grad, "side": side_state, "parts": parts}


def reference_step(plan, run_dir: Path, data_path: Path, *, eval_encoder: bool) -> dict:
    """one_step on one device (plan.n_devices == 1)."""
    options = DataOptions(str(data_path))
    prepare_run_dir(plan, run_dir, options)
    data = load_train_data(plan, run_dir, options, resume=False)
    return one_step(plan, run_dir, data, OneDevice(), eval_encoder=eval_encoder)


def step_worker(rank: int, world_size: int, port: int, cases: list, out_dir: str) -> None:
    """For each (name, plan, data path, eval_encoder): one sharded step, saved as name-rank{r}.pt; then
    gather_inputs of 1 row from rank 0 and 2 from rank 1, saved as gather-rank{r}.pt; then a rewiring of
    the shard after that step (the last case's), saved as rewire-rank{r}.pt."""
    from xmcfit.train.distributed import LabelSharded
    from xmcfit.train.ranks import rank_data

    world = join(rank, world_size, port)
    out = Path(out_dir)
    result = None
    for name, plan, data_path, eval_encoder in cases:
        run_dir = out / f"{name}-run"
        options = DataOptions(str(data_path))
        if rank == 0:  # as a run does: rank 0 prepares the run directory and writes the data records first
            prepare_run_dir(plan, run_dir, options)
            data = load_train_data(plan, run_dir, options, resume=False)
        dist.barrier()
        if rank != 0:
            data = rank_data(plan, run_dir, options, resume=False)
        result = one_step(plan, run_dir, data, LabelSharded(world), eval_encoder=eval_encoder)
        torch.save({k: v for k, v in result.items() if k != "parts"}, out / f"{name}-rank{rank}.pt")
    from xmcfit.sparse.sharded import gather_inputs

    mine = torch.full((rank + 1, 3), float(rank))  # ranks with different row counts (an epoch's last batch)
    torch.save(gather_inputs(mine, [1, 2][:world_size]), out / f"gather-rank{rank}.pt")
    parts = result["parts"]
    layer, optimizer = parts.model.classifier, parts.optimizers.classifier
    before = {"values": layer.values.detach().clone(), "indices": layer.indices.clone()}
    stats = parts.rewirer.rewire(1)
    state = optimizer.state[layer.values]
    torch.save({"before": before, "values": layer.values.detach().clone(), "indices": layer.indices.clone(),
                "exp_avg": state["exp_avg"].clone(), "exp_avg_sq": state["exp_avg_sq"].clone(),
                "n_moved": stats.n_moved, "seed": parts.rewirer.generator.initial_seed()},
               out / f"rewire-rank{rank}.pt")
    dist.destroy_process_group()
