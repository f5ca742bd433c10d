"""Cross-validation over all folds (the driver: gmp_tl_hf/cross_validation.py); same as `gmp-tl cv`.

python recipes/cross_validate.py --config recipes/configs/iemocap_hubert_base.yaml --output_dir runs/iemocap
"""

import sys

from gmp_tl_hf.cli import main

if __name__ == "__main__":
    main(["cv", *sys.argv[1:]])  # the calm console, run.log and one-line errors of `gmp-tl cv`
