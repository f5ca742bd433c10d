"""From corpora to batches and scores: corpus loaders, speaker-independent folds and validation splits,
the decode check and batch collator, WAR/UAR metrics, and the synthetic demo corpus."""

from .collator import IGNORE_INDEX, CropEpochCallback, SERCollator, audio_source, decode, scan_audio, with_crop

__all__ = ["IGNORE_INDEX", "CropEpochCallback", "SERCollator", "audio_source", "decode", "scan_audio", "with_crop"]
