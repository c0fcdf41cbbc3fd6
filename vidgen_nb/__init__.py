"""vidgen_nb: a VAE-WGAN-GP generator whose weights a 3D-CNN weight predictor adjusts on the fly.

The main names, importable from the package:

* ``Config`` (``Config.preset("tiny" | "cpu" | "seed")``) holds every size;
* ``VAE``, ``Discriminator``, ``WeightPredictor3DCNN`` are the three networks;
* ``WeightDeltas`` selects the VAE weights to adjust and decodes with them patched;
* ``synthetic_video`` makes the video the predictor watches;
* ``Generator`` puts them together: ``generate(z)`` is what the kit calls a generated image;
* ``make_loader`` and ``builtin_dataset`` bring images in.

``vidgen_nb.trainer.Trainer`` trains; docs/layout.md maps the rest.
"""

__version__ = "0.1.0"  # defined before the imports, so that any module may import it

from .config import Config, ModelConfig, VideoConfig  # noqa: E402
from .data import builtin_dataset, make_loader  # noqa: E402
from .deltas import WeightDeltas  # noqa: E402
from .generator import Generator  # noqa: E402
from .media import save_gif  # noqa: E402
from .models import VAE, Discriminator, WeightPredictor3DCNN, count_parameters  # noqa: E402
from .plots import plot_filmstrip  # noqa: E402
from .video import synthetic_video  # noqa: E402

__all__ = [
    "Config", "ModelConfig", "VideoConfig", "builtin_dataset", "make_loader", "WeightDeltas",
    "Generator", "VAE", "Discriminator", "WeightPredictor3DCNN", "count_parameters",
    "plot_filmstrip", "save_gif", "synthetic_video",
]
