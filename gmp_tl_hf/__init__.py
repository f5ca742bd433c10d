"""gmp-tl-hf: GMP-TL speech emotion recognition (arXiv 2405.02151) for the Hugging Face stack.

Importing the package registers the model with ``AutoConfig``, ``AutoModel`` and
``AutoModelForAudioClassification`` (HuBERT, WavLM and wav2vec 2.0 encoders).
"""

from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from .models.configuration_hubert_gmp import HubertGMPConfig, Wav2Vec2GMPConfig, WavLMGMPConfig
from .models.modeling_hubert_gmp import (
    GMP_MODELS,
    GMPEmotionOutput,
    HubertForGMPEmotion,
    Wav2Vec2ForGMPEmotion,
    WavLMForGMPEmotion,
    default_feature_extractor,
)
from .models.onnx_pipeline import OnnxSpeechEmotionPipeline

__version__ = "0.1.0"

for _model_class in GMP_MODELS.values():
    AutoConfig.register(_model_class.config_class.model_type, _model_class.config_class)
    AutoModel.register(_model_class.config_class, _model_class)
    AutoModelForAudioClassification.register(_model_class.config_class, _model_class)

__all__ = [
    "GMPEmotionOutput",
    "HubertForGMPEmotion",
    "HubertGMPConfig",
    "OnnxSpeechEmotionPipeline",
    "Wav2Vec2ForGMPEmotion",
    "Wav2Vec2GMPConfig",
    "WavLMForGMPEmotion",
    "WavLMGMPConfig",
    "default_feature_extractor",
]
