"""The processes of a run (torchrun, ``accelerate launch``), with or without GPUs."""

from __future__ import annotations

import logging
import os

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, parse_flag_from_env
from transformers import Trainer

logger = logging.getLogger(__name__)


def process_state() -> PartialState:
    """The processes of this run (torchrun, ``accelerate launch``), able to cooperate without a GPU.

    accelerate treats a launch on a machine without accelerators as one independent process per rank
    unless told to use the CPU; each rank would then train its own model on its own shard. So with
    several processes and no GPU, the CPU (gloo) is selected, for TrainingArguments too.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ
    if launched and not torch.cuda.is_available() and not os.environ.get("ACCELERATE_USE_CPU"):
        os.environ["ACCELERATE_USE_CPU"] = "true"
        logger.info("no GPU: running the %s processes on the CPU (gloo)", os.environ.get("WORLD_SIZE"))
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def check_processes_connected(trainer: Trainer) -> None:
    """Refuse to train when ranks were launched but are not joined into one distributed job."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if (
        world > 1
        and trainer.accelerator.num_processes > 1
        and trainer.accelerator.distributed_type == DistributedType.NO
    ):
        raise RuntimeError(
            f"{world} processes were launched but accelerate did not join them (distributed type NO); "
            "on a machine without GPUs set ACCELERATE_USE_CPU=true or pass --use_cpu"
        )
