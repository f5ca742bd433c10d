"""The HF ``Trainer`` as the recipes use it: training batches grouped by length, evaluation in order, a calm console."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import SequentialSampler
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments

from .processes import process_state
from .records import newest_complete_checkpoint

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


class MaskedPredictionTrainer(SERTrainer):
    """Pre-training: logs each target set's masked-prediction accuracy (over the frames scored since the
    last log) beside the loss, so a run's log history shows what the encoder learns, not the loss alone."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hits: torch.Tensor | None = None
        self._scored: torch.Tensor | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        hits = (outputs.masked_accuracy * outputs.masked_frames).detach().double().cpu()
        scored = outputs.masked_frames.detach().double().cpu()
        self._hits = hits if self._hits is None else self._hits + hits
        self._scored = scored if self._scored is None else self._scored + scored
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._scored is not None:
            for index, (hits, scored) in enumerate(zip(self._hits.tolist(), self._scored.tolist())):
                logs[f"masked_accuracy_{index}"] = round(hits / max(scored, 1.0), 4)
            self._hits = self._scored = None
        super().log(logs, start_time)


def quiet_console(trainer: Trainer) -> None:
    """Swap the Trainer's console printers for ours (logs to the log file, the training bar alone)."""
    for printer, replacement in ((ProgressCallback, QuietProgressCallback), (PrinterCallback, LogFileCallback)):
        if trainer.pop_callback(printer) is not None:
            trainer.add_callback(replacement)


def resume_point(training_args: TrainingArguments) -> str | None:
    """``--resume_from_checkpoint`` as given; for ``last``, the newest complete ``checkpoint-*`` of the
    output folder (the main process sets broken ones aside first, then every process looks)."""
    resume = training_args.resume_from_checkpoint
    if resume != "last":
        return resume
    state = process_state()
    if state.is_main_process:
        newest_complete_checkpoint(training_args.output_dir)
    state.wait_for_everyone()
    return newest_complete_checkpoint(training_args.output_dir)
