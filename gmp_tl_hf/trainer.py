"""The HF ``Trainer`` as the recipes use it: training batches grouped by length, evaluation in order, a calm console."""

from __future__ import annotations

import logging

from torch.utils.data import SequentialSampler
from transformers import ProgressCallback, Trainer, TrainerCallback

logger = logging.getLogger(__name__)


class SERTrainer(Trainer):
    """``Trainer`` that groups clips by length for training only.

    With ``train_sampling_strategy="group_by_length"`` the stock Trainer also shuffles evaluation
    into length groups, which under several processes loses or repeats clips. Evaluation here runs
    in dataset order (sharded by accelerate across processes); :func:`run_finetune` sorts the
    evaluation sets by length beforehand, so their batches carry little padding anyway.
    """

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


class QuietProgressCallback(ProgressCallback):
    """The Trainer's training bar, without its evaluation bars and printed log dictionaries (those go to
    the log file; the step's result is one INFO line)."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.debug("step %d: %s", state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})


class LogFileCallback(TrainerCallback):
    """With ``disable_tqdm``: the Trainer's logs to the log file, not the console."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.debug("step %d: %s", state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})
