"""The recipes, one file each, read top to bottom: ``finetune`` (the MTL, stage-1, stage-2 and plain
fine-tuning of one fold with the HF ``Trainer``) and ``extract_gmp`` (MTL features -> multi-scale
k-means -> GMP-labelled datasets). ``gmp-tl <step>`` and the scripts in the repository's ``recipes/``
folder run them; the cross-validation driver chains them."""
