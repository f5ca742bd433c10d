"""What the GMPs of a run encode (issue 12's diagnosis): per fold and scale, how pure the clusters are with
respect to the clip's emotion and the speaker's gender, and (``--compare``) how well the frame labels of
two runs (other seeds, same folds) agree.

    python recipes/studies/gmp_purity.py runs/study/emodb/native/gmp-tl/seed1
    python recipes/studies/gmp_purity.py RUN_SEED1 --compare RUN_SEED2

Purity: the share of training frames whose cluster's most frequent emotion (gender) is their own, beside
the share of the most frequent emotion (gender) overall, which is what clusters that know nothing score.
NMI: normalised mutual information between cluster ids and emotion (gender), 0 = independent. Agreement:
NMI between two runs' cluster ids of the same frames (ids are arbitrary, so not the share of equal ids).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from datasets import load_from_disk
from sklearn.metrics import normalized_mutual_info_score


def frame_table(gmp_dir: Path) -> dict[str, np.ndarray]:
    """Every training frame of a fold: its clip id, emotion, gender and label per scale."""
    rows = load_from_disk(str(gmp_dir / "train"))
    labels = [np.asarray(clip, dtype=np.int64).reshape(len(clip), -1) for clip in rows["gmp_labels"]]
    counts = [len(clip) for clip in labels]
    return {
        "id": np.repeat(np.asarray(rows["id"]), counts),
        "emotion": np.repeat(np.asarray(rows["emotion"]), counts),
        "gender": np.repeat(np.asarray(rows["gender"]), counts),
        "labels": np.concatenate(labels),
    }


def purity(clusters: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Share of frames whose cluster's majority class is their own, the majority class's share, and NMI."""
    table = np.zeros((clusters.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, classes), 1)
    return {
        "purity": float(table.max(axis=1).sum() / len(clusters)),
        "majority": float(table.sum(axis=0).max() / len(clusters)),
        "nmi": float(normalized_mutual_info_score(classes, clusters)),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a CV run of the gmp-tl chain (its fold*/gmp folders are read)")
    parser.add_argument("--compare", default=None, help="another run of the same folds (e.g. another seed)")
    args = parser.parse_args(argv)
    rows = []
    header = "| fold | K | emotion purity (majority) | emotion NMI | gender purity (majority) | gender NMI |"
    if args.compare:
        header += " agreement (NMI) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for gmp_dir in sorted(Path(args.run_dir).glob("fold*/gmp")):
        frames = frame_table(gmp_dir)
        other = frame_table(Path(args.compare) / gmp_dir.parent.name / "gmp") if args.compare else None
        known = frames["gender"] >= 0
        for scale in range(frames["labels"].shape[1]):
            clusters = frames["labels"][:, scale]
            emotion = purity(clusters, frames["emotion"])
            gender = purity(clusters[known], frames["gender"][known]) if known.any() else None
            row = {"fold": gmp_dir.parent.name, "clusters": int(clusters.max() + 1),
                   **{f"emotion_{key}": value for key, value in emotion.items()},
                   **{f"gender_{key}": value for key, value in (gender or {}).items()}}  # fmt: skip
            cells = [row["fold"], str(row["clusters"]), f"{emotion['purity']:.3f} ({emotion['majority']:.3f})",
                     f"{emotion['nmi']:.3f}"]  # fmt: skip
            cells += ["-", "-"] if gender is None else [f"{gender['purity']:.3f} ({gender['majority']:.3f})",
                                                        f"{gender['nmi']:.3f}"]  # fmt: skip
            if other is not None:
                if not np.array_equal(other["id"], frames["id"]):
                    raise ValueError(f"{args.compare}/{gmp_dir.parent.name} labels other clips than {gmp_dir}")
                row["agreement_nmi"] = float(normalized_mutual_info_score(other["labels"][:, scale], clusters))
                cells.append(f"{row['agreement_nmi']:.3f}")
            rows.append(row)
            print("| " + " | ".join(cells) + " |")
    if not rows:
        raise FileNotFoundError(f"no fold*/gmp folders under {args.run_dir}")
    return rows


if __name__ == "__main__":
    main()
