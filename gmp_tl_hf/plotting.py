"""A picture of one answer: the waveform, the emotion scores over time, the winning label per window,
and the utterance answer and gender in the title."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state


def plot_timeline(
    result: dict,
    path: str | Path,
    waveform: np.ndarray | None = None,
    sampling_rate: int = 16000,
    title: str | None = None,
) -> Path:
    """Write ``result`` (a pipeline answer made with ``return_timeline=True``) as a PNG at ``path``.

    Top: the waveform (when given). Bottom: every label's score per window as stacked areas, with the
    winning label of each window written above it. Title: the clip's answer (and gender, when present).
    """
    timeline = result.get("timeline")
    if not timeline:
        raise ValueError("plot_timeline needs an answer made with return_timeline=True")
    labels = sorted(timeline[0]["scores"])
    edges = np.array([window["start"] for window in timeline] + [timeline[-1]["end"]])
    scores = np.array([[window["scores"][label] for label in labels] for window in timeline])
    colours = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"](np.arange(len(labels)))
    rows = 2 if waveform is not None else 1
    figure = Figure(figsize=(10, 2.2 + 2.2 * rows))
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if waveform is not None:
        time = np.arange(len(waveform)) / sampling_rate
        axes[0].plot(time, waveform, linewidth=0.4, color="0.3")
        axes[0].set_ylabel("waveform")
        axes[0].set_yticks([])
    ax = axes[-1]
    bottom = np.zeros(len(timeline))
    for index, label in enumerate(labels):
        ax.stairs(bottom + scores[:, index], edges, baseline=bottom, fill=True, color=colours[index], label=label)
        bottom = bottom + scores[:, index]
    start = 0  # the winning label, once per run of windows that agree
    for index in range(1, len(timeline) + 1):
        if index == len(timeline) or timeline[index]["label"] != timeline[start]["label"]:
            centre = (edges[start] + edges[index]) / 2
            ax.text(centre, 1.03, timeline[start]["label"], ha="center", va="bottom", fontsize=8)
            ax.axvline(edges[start], color="white", linewidth=0.8)
            start = index
    ax.set_ylim(0, 1.25)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("emotion score")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    best = result["emotion"][0]
    heading = f"{best['label']} ({best['score']:.2f})"
    if result.get("gender"):
        heading += f", {result['gender'][0]['label']} speaker ({result['gender'][0]['score']:.2f})"
    figure.suptitle(f"{title}: {heading}" if title else heading)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


__all__ = ["plot_timeline"]
