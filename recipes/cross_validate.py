"""Cross-validation over all folds (see gmp_tl_hf.cross_validation); same as `gmp-tl cv`.

python recipes/cross_validate.py --config recipes/configs/iemocap_hubert_base.yaml --output_dir runs/iemocap
"""

from gmp_tl_hf.cli import setup_logging
from gmp_tl_hf.cross_validation import main

if __name__ == "__main__":
    setup_logging()
    main()
