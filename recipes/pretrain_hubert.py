"""Launcher of the pre-training recipe, same as `gmp-tl pretrain`. The recipe itself, readable top to bottom
(arguments -> data -> targets -> model -> Trainer -> save), is gmp_tl_hf/recipes/pretrain.py.

python recipes/pretrain_hubert.py --config recipes/configs/pretrain_tiny.yaml --output_dir runs/pretrain
accelerate launch --multi_gpu --num_processes 2 recipes/pretrain_hubert.py ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["pretrain", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl pretrain`
