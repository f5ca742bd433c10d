"""The GMP engine: streamed frame features of a model layer, multi-scale k-means, the gender-aware
quantizer, and the ``datasets`` map function that attaches frame labels (fairseq ``simple_kmeans``
style: small single-purpose pieces with a file contract between them)."""

from .features import FrameFeatureStore, extract_frame_features
from .kmeans import MultiScaleKMeans
from .labels import add_gmp_labels
from .quantizer import GMPQuantizer

__all__ = ["FrameFeatureStore", "GMPQuantizer", "MultiScaleKMeans", "add_gmp_labels", "extract_frame_features"]
