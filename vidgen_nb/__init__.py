"""vidgen_nb: a VAE-WGAN-GP generator whose weights a 3D-CNN weight predictor adjusts on the fly."""

__version__ = "0.1.0"
