"""Model cards (rendered from ``model_card.md``) and pushing a finished run to the Hub."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from string import Template
from typing import Any

import yaml
from huggingface_hub import CommitOperationAdd, HfApi

TEMPLATE = Path(__file__).with_name("model_card.md")
STAGE_NAMES = {
    "plain": "plain fine-tuning baseline (utterance emotion loss only)",
    "mtl": "multi-task model (emotion + speaker gender) whose features give the pseudo-labels",
    "stage1": "stage-1 model (utterance emotion + frame-level GMP losses)",
    "stage2": "final GMP-TL model (stage 2: AM-Softmax emotion head)",
}
PAPER_RESULTS = "The paper's abstract reports WAR 80.0 % / UAR 82.0 % on IEMOCAP with a HuBERT encoder."
UPLOAD_IGNORE = ("checkpoint-*", "random_init", "runs", "*.tmp")  # matched against top-level names


def _dataset_name(data: dict) -> str:
    return f"{data['dataset']} ({data['fold_protocol']}, test fold {data['fold']})"


def model_card(results: dict[str, Any], base_model: str | None, repo_id: str = "<this folder or repo>") -> str:
    """The README.md of a run folder: metadata (incl. model-index) plus usage, training and results."""
    data, config = results["data"], results["model"]["config"]
    test = results.get("test")
    front: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "audio-classification",
        "license": "apache-2.0",
        "tags": ["speech-emotion-recognition", "hubert", "gmp-tl", "audio-classification"],
        "metrics": ["accuracy", "recall"],
        "datasets": [data["dataset"]],
    }
    if base_model:  # a Hub id; absent when the chain started from a local or random encoder
        front["base_model"] = base_model
    if test:
        front["model-index"] = [
            {
                "name": repo_id.rsplit("/", 1)[-1],
                "results": [
                    {
                        "task": {"type": "audio-classification", "name": "Speech emotion recognition"},
                        "dataset": {"name": _dataset_name(data), "type": data["dataset"]},
                        "metrics": [
                            {"type": "accuracy", "value": round(test["war"], 4), "name": "WAR"},
                            {
                                "type": "recall",
                                "value": round(test["uar"], 4),
                                "name": "UAR",
                                "args": {"average": "macro"},
                            },
                        ],
                    }
                ],
            }
        ]
    rows = ["| split | WAR | UAR | macro-F1 | gender accuracy |", "|---|---|---|---|---|"]
    for split in ("validation", "test"):
        if split in results:
            scores = results[split]
            gender = scores.get("gender_accuracy")
            gender = "–" if gender is None else f"{100 * gender:.1f}"
            rows.append(
                f"| {split} | {100 * scores['war']:.1f} | {100 * scores['uar']:.1f} | {100 * scores['macro_f1']:.1f} "
                f"| {gender} |"
            )
    stage = results["stage"]
    details = f"emotion head {config.get('emotion_head', 'linear')} on {emotion_head_input(config)}"
    if results.get("emotion_head_refit"):
        fit = results["emotion_head_refit"]
        trained = " (trained as AM-Softmax)" if fit["replaced_head"] == "am_softmax" else ""
        details += f" refit by logistic regression on the final encoder{trained}, C = {fit['c']:g}"
    if config.get("gmp_cluster_sizes"):
        details += f", GMP heads {config['gmp_cluster_sizes']}"
    if config.get("gender_loss_weight", 1.0):
        details += f", gender loss weight {config.get('gender_loss_weight', 1.0)}"
    if stage == "stage2":
        details += f", head initialised {results['model'].get('head_init', 'from_stage1').replace('_', ' ')}"
    if config.get("gender_head_trained"):
        spectral = " and log-mel/MFCC statistics of the audio" if config.get("gender_spectral_features") else ""
        details += f", gender head refit on the final encoder{spectral}"
    else:
        details += ", gender head untrained (the pipeline refuses return_gender)"
    return Template(TEMPLATE.read_text()).substitute(
        front_matter=yaml.safe_dump(front, sort_keys=False).strip(),
        title=f"GMP-TL speech emotion recognition: {STAGE_NAMES[stage].split(' (')[0]}",
        stage_name=STAGE_NAMES[stage],
        repo_id=repo_id,
        classes=", ".join(config["id2label"][k] for k in sorted(config["id2label"], key=int)),
        base_model=base_model or "a local or randomly initialised encoder (see the training record)",
        data=_dataset_name(data),
        stage_details=details,
        steps=results.get("global_step"),
        world_size=results.get("world_size"),
        results="\n".join(rows),
        provenance=(
            "Every training setting (layer, cluster sizes, loss weights, margin, learning rates, folds) is our "
            "choice; the paper's abstract states only the method's structure. "
            "These numbers were measured by the run that trained these weights, on the held-out fold named above. "
            + PAPER_RESULTS
            + " That is the paper's number, not a measurement of this checkpoint."
        ),
    )


def emotion_head_input(config: dict[str, Any]) -> str:
    """What the emotion head reads, in words, from a saved model's config."""
    if config.get("emotion_input", "projected") == "all_layers":
        frames = "every layer"
    else:
        frames = "the projected " + ("learned layer sum" if config.get("use_weighted_layer_sum") else "last layer")
    return f"{config.get('pooling', 'mean')} pooling of {frames}"


def write_model_card(
    output_dir: str | Path, results: dict[str, Any], base_model: str | None, repo_id: str | None = None
) -> Path:
    path = Path(output_dir) / "README.md"
    path.write_text(model_card(results, base_model, repo_id or Path(output_dir).name))
    return path


def files_to_push(output_dir: str | Path) -> list[Path]:
    """Everything in the run folder except checkpoints, the random-init copy, logs and temporaries."""
    root = Path(output_dir)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(fnmatch(relative.parts[0], pattern) for pattern in UPLOAD_IGNORE):
            files.append(relative)
    return files


def push_run(output_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Create (or reuse) the model repo and upload the run folder in one commit: weights, code,
    feature extractor, quantizer and model card."""
    api = HfApi(token=token)
    url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model")
    operations = [
        CommitOperationAdd(path_in_repo=relative.as_posix(), path_or_fileobj=str(Path(output_dir) / relative))
        for relative in files_to_push(output_dir)
    ]
    api.create_commit(url.repo_id, operations=operations, commit_message="Upload GMP-TL model", repo_type="model")
    return str(url)
