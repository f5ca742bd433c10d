"""``gmp-tl``: one command for every step of the GMP-TL workflow.

    gmp-tl demo                     the whole chain offline on a synthetic corpus (a few minutes)
    gmp-tl cv --config C.yaml ...   cross-validation: MTL -> GMP -> stage 1 -> stage 2 on every fold
    gmp-tl mtl ...                  multi-task (emotion + gender) fine-tuning on one fold
    gmp-tl extract ...              GMP extraction: features, multi-scale k-means, labelled datasets
    gmp-tl stage1 ...               stage 1: emotion + frame-level GMP losses
    gmp-tl stage2 ...               stage 2: AM-Softmax emotion head from the stage-1 model
    gmp-tl plain ...                plain fine-tuning baseline (emotion loss only)

Each step takes ``--config file.yaml`` plus flags; ``gmp-tl <step> --help`` lists them. A refusal or a
user mistake ends with one line and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from functools import partial

import yaml

from .records import RecordMismatch, RunLocked


def _commands():
    from . import cross_validation, demo, gmp_extraction, training

    return {
        "demo": demo.main,
        "cv": cross_validation.main,
        "extract": gmp_extraction.main,
        **{stage: partial(training.main, stage) for stage in ("mtl", "stage1", "stage2", "plain")},
    }


def setup_logging() -> None:
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.WARNING
    )
    logging.getLogger("gmp_tl_hf").setLevel(logging.INFO)  # our progress: one line per finished step
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()


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
    setup_logging()
    try:
        commands[argv[0]](argv[1:])
    except (RecordMismatch, RunLocked, FileNotFoundError, yaml.YAMLError) as error:
        if debug:
            raise
        # a user's mistake or a refusal that protects a record: one line, exit code 2
        message = " ".join(str(error).split())
        print(f"gmp-tl {argv[0]}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
