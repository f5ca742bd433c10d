"""``gmp-tl``: one command for every step of the GMP-TL workflow.

    gmp-tl demo                     the whole chain offline on a synthetic corpus (a few minutes)
    gmp-tl cv --config C.yaml ...   cross-validation: MTL -> GMP -> stage 1 -> stage 2 on every fold
    gmp-tl mtl ...                  multi-task (emotion + gender) fine-tuning on one fold
    gmp-tl extract ...              GMP extraction: features, multi-scale k-means, labelled datasets
    gmp-tl stage1 ...               stage 1: emotion + frame-level GMP losses
    gmp-tl stage2 ...               stage 2: AM-Softmax emotion head from the stage-1 model
    gmp-tl plain ...                plain fine-tuning baseline (emotion loss only)
    gmp-tl pretrain ...             HuBERT self-supervised (continued) pre-training on any audio, our k-means targets
    gmp-tl predict MODEL PATH...    label files, folders or manifests: one row per file (CSV/JSONL), plots
    gmp-tl export-onnx MODEL --output DIR   an ONNX model + a pipeline that runs it without torch
    gmp-tl app MODEL [--port 7860]  a web demo (upload or record a clip; ranking, gender, timeline plot)

Each step takes ``--config file.yaml`` plus flags; ``gmp-tl <step> --help`` lists them. A refusal or a
user mistake ends with one line and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from errno import ENOSPC
from functools import partial
from pathlib import Path

import datasets
import transformers
import yaml

from . import app, cross_validation, demo, onnx_export, predict
from .arguments import ConfigError
from .models.audio_io import AudioError
from .recipes import extract_gmp, finetune, pretrain
from .records import RecordMismatch, RunLocked


def _commands():
    return {
        "demo": demo.main,
        "cv": cross_validation.main,
        "extract": extract_gmp.main,
        "pretrain": pretrain.main,
        "export-onnx": onnx_export.main,
        "predict": predict.main,
        "app": app.main,
        **{stage: partial(finetune.main, stage) for stage in ("mtl", "stage1", "stage2", "plain")},
    }


def setup_logging(log_file: str | Path | None = None) -> list[logging.Handler]:
    """A calm console (our progress lines at INFO, warnings, a few bars); everything, transformers' and
    datasets' messages included, at DEBUG in ``log_file``. Returns the handlers, for :func:`main` to close."""
    console = logging.StreamHandler()
    console.setLevel(logging.INFO)
    console.addFilter(lambda record: record.levelno >= logging.WARNING or record.name.startswith("gmp_tl_hf"))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
        handlers[-1].setLevel(logging.DEBUG)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.DEBUG if log_file else logging.INFO, handlers=handlers, force=True)  # fmt: skip
    verbosity = logging.INFO if log_file else logging.WARNING
    # transformers at WARNING: at INFO its loading report walks every model for tensor-parallel notes
    transformers.utils.logging.set_verbosity(logging.WARNING)
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()  # to our handlers; the console keeps only warnings
    transformers.utils.logging.disable_progress_bar()  # internal bars: loading weights, writing shards
    datasets.utils.logging.set_verbosity(verbosity)  # datasets logs without a handler of its own
    datasets.utils.logging.enable_propagation()
    datasets_logger = logging.getLogger("datasets")
    for handler in list(datasets_logger.handlers):  # its own stderr handler would print twice
        datasets_logger.removeHandler(handler)
    datasets.disable_progress_bars()  # internal bars: casting, flattening, filtering
    logging.getLogger("gmp_tl_hf").setLevel(logging.DEBUG if log_file else logging.INFO)
    return handlers


def output_dir_of(argv: list[str]) -> str | None:
    """The run folder a command writes to (where its ``run.log`` goes), if it names one."""
    for index, arg in enumerate(argv):
        if arg == "--output_dir" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--output_dir="):
            return arg.split("=", 1)[1]
    return "runs/demo" if argv and argv[0] == "demo" else None


def stop(program: str, error: Exception, message: str, debug: bool) -> None:
    """End a ``program`` (``gmp-tl COMMAND``, a study script) that cannot go on in one line and exit code 2;
    with ``--debug``, the traceback."""
    if debug:
        raise error
    logging.getLogger(__name__).debug("stopped", exc_info=error)
    print(f"{program}: error: {message} (--debug shows the traceback)", file=sys.stderr)
    raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    commands = _commands()
    if argv[0] not in commands:
        print(f"gmp-tl: unknown command {argv[0]!r}\n{__doc__}", file=sys.stderr)
        raise SystemExit(2)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    output_dir = output_dir_of(argv)
    rank = os.environ.get("RANK", "0")  # torchrun / accelerate: one log file per process
    log_file = Path(output_dir) / ("run.log" if rank == "0" else f"run.rank{rank}.log") if output_dir else None
    handlers = setup_logging(log_file)
    try:
        commands[argv[0]](argv[1:])
    except (ConfigError, AudioError, RecordMismatch, RunLocked, FileNotFoundError, yaml.YAMLError) as error:
        # a user's mistake or a refusal that protects a record; a bad-file list keeps its lines
        message = str(error) if isinstance(error, AudioError) else " ".join(str(error).split())
        stop(f"gmp-tl {argv[0]}", error, message, debug)
    except OSError as error:
        if error.errno != ENOSPC:
            raise
        message = f"the disk is full ({error}); free space and rerun the same command: it resumes"
        stop(f"gmp-tl {argv[0]}", error, message, debug)
    finally:  # a later command in this process (a notebook, the tests) neither writes here nor to a closed stream
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
    if log_file is not None:
        print(f"full log: {log_file}")


if __name__ == "__main__":
    main()
