"""vidgen_nb: a VAE-WGAN-GP generator whose weights a 3D-CNN weight predictor adjusts on the fly.

The main names, importable from the package:

* ``Config`` (``Config.preset("tiny" | "cpu" | "seed")``) holds every size;
* ``VAE``, ``Discriminator``, ``WeightPredictor3DCNN`` are the three networks;
* ``WeightDeltas`` selects the VAE weights to adjust and decodes with them patched;
* ``synthetic_video`` makes the video the predictor watches;
* ``make_loader`` and ``builtin_dataset`` bring images in.
"""

from .config import Config, ModelConfig, VideoConfig
from .data import builtin_dataset, make_loader
from .deltas import WeightDeltas
from .models import VAE, Discriminator, WeightPredictor3DCNN, count_parameters
from .video import plot_filmstrip, save_gif, synthetic_video

__version__ = "0.1.0"

__all__ = [
    "Config", "ModelConfig", "VideoConfig", "builtin_dataset", "make_loader", "WeightDeltas",
    "VAE", "Discriminator", "WeightPredictor3DCNN", "count_parameters", "plot_filmstrip",
    "save_gif", "synthetic_video",
]
