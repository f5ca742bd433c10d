"""The stage2 fine-tuning recipe (see gmp_tl_hf.training). Runs under python, torchrun or accelerate launch:

python recipes/stage2_finetune.py --config recipes/configs/<config>.yaml --output_dir runs/stage2
accelerate launch --multi_gpu --num_processes 2 recipes/stage2_finetune.py ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["stage2", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl stage2`
