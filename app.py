"""A Hugging Face Space entry point: the GMP-TL web demo for the model named by ``GMP_TL_MODEL``.

On a Space, set the variable to a model repo id (and ``GRADIO_SERVER_NAME=0.0.0.0``, which Spaces set);
locally, ``GMP_TL_MODEL=runs/demo/fold0/stage2 python app.py`` serves on 127.0.0.1:7860. The same app
as ``gmp-tl app MODEL``.
"""

import os

from gmp_tl_hf.app import build_app

if __name__ == "__main__":
    model = os.environ.get("GMP_TL_MODEL")
    if not model:
        raise SystemExit("set GMP_TL_MODEL to a checkpoint folder, a Hub id or an ONNX export folder")
    max_upload_mb = float(os.environ.get("GMP_TL_MAX_UPLOAD_MB", "50"))
    build_app(model, max_upload_mb).queue().launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        max_file_size=int(max_upload_mb * 2**20),
        ssr_mode=False,
    )
