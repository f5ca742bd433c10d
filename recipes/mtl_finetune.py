"""Launcher of the mtl fine-tuning step, same as `gmp-tl mtl`. The recipe itself, readable top to bottom
(arguments -> data -> model -> Trainer -> evaluate -> save/push), is gmp_tl_hf/recipes/finetune.py.

python recipes/mtl_finetune.py --config recipes/configs/<config>.yaml --output_dir runs/mtl
accelerate launch --multi_gpu --num_processes 2 recipes/mtl_finetune.py ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["mtl", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl mtl`
