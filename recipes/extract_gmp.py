"""The GMP extraction recipe (see gmp_tl_hf.gmp_extraction): MTL features -> multi-scale k-means ->
datasets with frame-level pseudo-labels. Under torchrun/accelerate the work is split across processes.

    python recipes/extract_gmp.py --model_name_or_path runs/mtl --output_dir runs/gmp --dataset iemocap --data_dir ...
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["extract", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl extract`
