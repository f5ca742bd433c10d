"""``gmp-tl app MODEL``: a web demo (Gradio) to upload or record a clip and see the emotion ranking,
the speaker's gender and the emotion timeline. Binds 127.0.0.1 unless ``--host`` says otherwise; uploads
over ``--max_upload_mb`` are refused. Needs the ``app`` extra: ``pip install 'gmp-tl-hf[app]'``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import uuid
from pathlib import Path

from .arguments import ConfigError
from .models.audio_io import AudioError, decode_input
from .plotting import plot_timeline
from .predict import gender_head_trained, load_classifier, sampling_rate_of

try:
    import gradio
except ImportError:  # reported by build_app
    gradio = None

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 50.0
INTRO = (
    "# Speech emotion recognition (GMP-TL)\n"
    "Upload a recording or record one with the microphone, then press **Analyse**. You get the emotion "
    "ranking for the whole clip, the speaker's gender (when the model has a trained gender head) and how "
    "the emotion scores change over time."
)


def build_app(model: str, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, window: float = 0.5, threads=None):
    """The Gradio app for ``model`` (a checkpoint folder, Hub id or ONNX export)."""
    if gradio is None:
        raise ConfigError("the web demo needs gradio: pip install 'gmp-tl-hf[app]'")
    classifier = load_classifier(model, threads)
    rate = sampling_rate_of(classifier)
    with_gender = gender_head_trained(classifier)
    plots = Path(tempfile.mkdtemp(prefix="gmp-tl-app-"))

    def analyse(path: str | None):
        if path is None:
            raise gradio.Error("Upload or record a clip first.")
        megabytes = Path(path).stat().st_size / 2**20
        if megabytes > max_upload_mb:
            raise gradio.Error(f"The file is {megabytes:.1f} MB; this demo takes up to {max_upload_mb:g} MB.")
        try:
            wave = decode_input(path, None, rate)
        except AudioError as error:
            raise gradio.Error(f"This file cannot be used: {error.reason}.") from None
        answer = classifier(wave, return_gender=with_gender, return_timeline=True, timeline_window=window)
        ranking = {entry["label"]: entry["score"] for entry in answer["emotion"]}
        if with_gender:
            best = answer["gender"][0]
            gender = f"**Speaker:** {best['label']} ({100 * best['score']:.0f} %)"
        else:
            gender = "**Speaker:** this model has no trained gender head."
        seconds = len(wave) / rate
        picture = plot_timeline(answer, plots / f"{uuid.uuid4().hex}.png", waveform=wave, sampling_rate=rate,
                                title=f"{Path(path).name} ({seconds:.1f} s)")  # fmt: skip
        return ranking, gender, str(picture)

    with gradio.Blocks(title="GMP-TL speech emotion recognition") as app:
        gradio.Markdown(INTRO)
        with gradio.Row():
            audio = gradio.Audio(sources=["upload", "microphone"], type="filepath", label="Speech")
            with gradio.Column():
                emotion = gradio.Label(label="Emotion", num_top_classes=len(classifier_labels(classifier)))
                gender = gradio.Markdown()
        button = gradio.Button("Analyse", variant="primary")
        timeline = gradio.Image(label="Emotion over time", type="filepath")
        button.click(analyse, inputs=audio, outputs=[emotion, gender, timeline])
    return app


def classifier_labels(classifier) -> list[str]:
    if hasattr(classifier, "id2label"):
        return list(classifier.id2label.values())
    return list(classifier.model.config.id2label.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gmp-tl app", description=__doc__)
    parser.add_argument("model", help="a checkpoint folder, a Hub id, or a folder made by `gmp-tl export-onnx`")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines too")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_upload_mb", type=float, default=DEFAULT_MAX_UPLOAD_MB)
    parser.add_argument("--window", type=float, default=0.5, help="timeline window in seconds")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    app = build_app(args.model, args.max_upload_mb, args.window, args.threads)
    logger.info("serving %s on http://%s:%d (Ctrl+C stops)", args.model, args.host, args.port)
    app.queue().launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=int(args.max_upload_mb * 2**20),  # bytes
        quiet=True,  # our own line says where it serves
        ssr_mode=False,  # plain client-side rendering: no Node.js needed
    )
