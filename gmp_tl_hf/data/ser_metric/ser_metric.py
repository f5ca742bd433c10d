"""Speech emotion recognition metrics as an `evaluate` module that loads offline.

import evaluate
from gmp_tl_hf.data.metrics import SER_METRIC_PATH
metric = evaluate.load(SER_METRIC_PATH)
metric.compute(predictions=[0, 1, 1], references=[0, 1, 2], label_names=["neu", "hap", "ang"])
"""

import datasets
import evaluate

from gmp_tl_hf.data.metrics import ser_metrics

_DESCRIPTION = """WAR (weighted average recall = accuracy), UAR (unweighted average recall over the classes
present in the references), macro-F1, per-class recall and the confusion matrix."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    label_names (list of str, optional): class names in id order (sets the number of classes).
Returns:
    war, uar, macro_f1 (float), recall (dict class -> recall), confusion_matrix (list of lists), labels.
"""

_CITATION = """@article{pan2024gmptl,
  title={{GMP-TL}: Gender-augmented Multi-scale Pseudo-label Enhanced Transfer Learning
         for Speech Emotion Recognition},
  author={Pan, Yu and others},
  journal={arXiv preprint arXiv:2405.02151},
  year={2024}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SerMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, label_names=None):
        return ser_metrics(references, predictions, label_names)
