"""Launcher of the stage2 fine-tuning step, same as `gmp-tl stage2`. The recipe itself, readable top to bottom
(arguments -> data -> model -> Trainer -> evaluate -> save/push), is gmp_tl_hf/recipes/finetune.py.

python recipes/stage2_finetune.py --config recipes/configs/<config>.yaml --output_dir runs/stage2
accelerate launch --multi_gpu --num_processes 2 recipes/stage2_finetune.py ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["stage2", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl stage2`
