"""Data-parallel training over processes started by ``torchrun`` (NCCL between GPUs, gloo between CPU processes).

Every process (*replica*) draws the same global batch from the same seed and trains on its own rows of it; after
each backward pass the gradients are averaged over replicas, so every replica takes the same optimizer step and
the run equals a single process training on the global batch, up to float rounding. Sampled actions use the
random numbers the single process would draw for those rows (:func:`~napari_pixelrl.core.rollout.choose_actions`).

Gradients are averaged with one ``all_reduce`` over all of them after the backward pass. That is what
``torch.nn.parallel.DistributedDataParallel`` does, without overlapping communication with the backward pass; the
wrapper itself does not fit this trainer, which calls the network once per step before a single backward pass and
trains parameters outside its ``forward`` (the RMC filter, the warm start's denoiser head).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

__all__ = ["Replicas", "average_gradients", "mean_over_replicas"]


@dataclass(frozen=True)
class Replicas:
    """This process's place among the training processes; one process (rank 0 of 1) without ``torchrun``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Replicas:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, which ``torchrun`` sets."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, logs and writes checkpoints."""
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This replica's rows of a global batch of ``batch_size``.

        Raises
        ------
        ValueError
            If the batch does not split evenly over the replicas.
        """
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size {batch_size} does not split evenly over {self.world_size} processes; "
                f"use a multiple of {self.world_size}"
            )
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def join(self, device: torch.device) -> torch.device:
        """Join the process group (NCCL on CUDA, gloo otherwise) and return this replica's device: its own GPU
        (``cuda:LOCAL_RANK``) when training on CUDA."""
        if self.world_size == 1:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return device

    def barrier(self) -> None:
        """Wait until every replica gets here (e.g. until rank 0 has written a stage's policy)."""
        if self.world_size > 1:
            dist.barrier()


def average_gradients(model: nn.Module, replicas: Replicas) -> None:
    """Replace every gradient by its mean over the replicas (one ``all_reduce`` of all of them)."""
    if replicas.world_size == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= replicas.world_size
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)


def mean_over_replicas(values: torch.Tensor, replicas: Replicas) -> torch.Tensor:
    """Mean of ``values`` over the replicas (for reported numbers: equal shares make it the global batch's)."""
    if replicas.world_size == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / replicas.world_size
