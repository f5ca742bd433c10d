"""Does what a trained model says agree with itself? Run over the test fold of finished CV runs.

    python recipes/studies/check_consistency.py runs/emodb-study/fold0/stage2 runs/emodb-study/fold1/stage2

For every test clip of each model's fold (read from its ``results.json``) it asks the pipeline for the
utterance answer and for a timeline whose one window spans the whole clip, and reports how often the
two labels agree and the largest score difference (they are one computation, so: always, ~1e-6);
and, for models with a trained gender head, the gender accuracy on the test fold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from transformers import pipeline

from gmp_tl_hf.arguments import DataArguments
from gmp_tl_hf.data.splits import fold_split
from gmp_tl_hf.fold_data import load_data


def check(model_dir: Path) -> dict:
    record = json.loads((model_dir / "results.json").read_text())
    data_args = DataArguments(**record["data"])
    test = fold_split(load_data(data_args), data_args.fold)["test"]
    classifier = pipeline("audio-classification", model=str(model_dir), trust_remote_code=True)
    gender_trained = classifier.model.config.gender_head_trained
    genders = classifier.model.config.gender_labels
    agree, differences, gender_hits, gender_known = 0, [], 0, 0
    for row in test:
        result = classifier(row["audio"]["path"], return_timeline=True, timeline_window=3600.0,
                            return_gender=gender_trained, top_k=len(classifier.model.config.id2label))  # fmt: skip
        window = result["timeline"][0]
        utterance = {item["label"]: item["score"] for item in result["emotion"]}
        agree += window["label"] == result["emotion"][0]["label"]
        differences.append(max(abs(window["scores"][label] - score) for label, score in utterance.items()))
        if gender_trained and row["gender"] >= 0:
            gender_known += 1
            gender_hits += result["gender"][0]["label"] == genders[row["gender"]]
    return {
        "model": str(model_dir),
        "clips": len(test),
        "window_agrees_with_utterance": agree / len(test),
        "max_score_difference": float(np.max(differences)),
        "gender_accuracy": gender_hits / gender_known if gender_known else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    print("| model | test clips | whole-clip window = utterance label | max score difference | gender accuracy |")
    print("|---|---|---|---|---|")
    for model_dir in args.model_dirs:
        r = check(model_dir)
        gender = "refused (untrained head)" if r["gender_accuracy"] is None else f"{100 * r['gender_accuracy']:.1f} %"
        print(f"| {r['model']} | {r['clips']} | {100 * r['window_agrees_with_utterance']:.1f} % | "
              f"{r['max_score_difference']:.1e} | {gender} |")  # fmt: skip


if __name__ == "__main__":
    main()
