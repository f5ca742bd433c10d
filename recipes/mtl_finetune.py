"""The mtl fine-tuning recipe (see gmp_tl_hf.training). Runs under python, torchrun or accelerate launch:

python recipes/mtl_finetune.py --config recipes/configs/<config>.yaml --output_dir runs/mtl
accelerate launch --multi_gpu --num_processes 2 recipes/mtl_finetune.py ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["mtl", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl mtl`
