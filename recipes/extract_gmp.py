"""Launcher of the GMP extraction, same as `gmp-tl extract`. The recipe itself (MTL features -> multi-scale
k-means -> datasets with frame-level pseudo-labels) is gmp_tl_hf/recipes/extract_gmp.py. Under
torchrun/accelerate the work is split across processes.

    python recipes/extract_gmp.py --model_name_or_path runs/mtl --output_dir runs/gmp --dataset iemocap --data_dir ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["extract", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl extract`
