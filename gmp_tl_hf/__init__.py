"""gmp-tl-hf: GMP-TL speech emotion recognition (arXiv 2405.02151) for the Hugging Face stack.

Importing the package registers the model with ``AutoConfig``, ``AutoModel`` and
``AutoModelForAudioClassification``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from .models.configuration_hubert_gmp import HubertGMPConfig
from .models.modeling_hubert_gmp import GMPEmotionOutput, HubertForGMPEmotion, default_feature_extractor
from .models.onnx_pipeline import OnnxSpeechEmotionPipeline

__version__ = "0.1.0"

AutoConfig.register(HubertGMPConfig.model_type, HubertGMPConfig)
AutoModel.register(HubertGMPConfig, HubertForGMPEmotion)
AutoModelForAudioClassification.register(HubertGMPConfig, HubertForGMPEmotion)

__all__ = [
    "GMPEmotionOutput",
    "HubertForGMPEmotion",
    "HubertGMPConfig",
    "OnnxSpeechEmotionPipeline",
    "default_feature_extractor",
]
