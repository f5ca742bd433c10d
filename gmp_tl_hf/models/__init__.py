"""The model, exactly the self-contained bundle every checkpoint carries: configuration, modeling,
pipeline, the answers' format and audio decoding. These files import only torch, transformers, numpy
and each other (plus soundfile/soxr to read and resample audio), so a checkpoint loads with
``trust_remote_code=True`` where this package is not installed. ``onnx_pipeline`` (with ``answers``
and ``audio_io``) is what an ONNX export carries: numpy and onnxruntime, no torch."""

from .configuration_hubert_gmp import HubertGMPConfig
from .modeling_hubert_gmp import GMPEmotionOutput, HubertForGMPEmotion, default_feature_extractor
from .onnx_pipeline import OnnxSpeechEmotionPipeline
from .pipeline_hubert_gmp import SpeechEmotionPipeline

__all__ = [
    "GMPEmotionOutput",
    "HubertForGMPEmotion",
    "HubertGMPConfig",
    "OnnxSpeechEmotionPipeline",
    "SpeechEmotionPipeline",
    "default_feature_extractor",
]
