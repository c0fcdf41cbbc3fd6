"""The sixth screen (README, Training): does the decoder's way of upsampling, or a
normalisation of its features, bring shapes?

Five studies changed the loss balance, widths, depth, data, sampling and the length of
training, and the shape judge never named more than a fifth of the samples. Two things
every one of them kept are tried here, by patching ``vidgen_nb.models.Decoder`` in each
worker before its networks are built (the library itself is not changed):

* ``resize``: each upsampling ConvTranspose2d(4x4, stride 2) becomes a nearest-neighbour
  2x upsampling followed by ConvTranspose2d(3x3, stride 1), the resize-convolution of
  Odena et al. (2016), which cannot make the checkerboard pattern of a strided
  transposed convolution; the last layer ``out`` (the deltas' target) is then a
  ConvTranspose2d(3x3, stride 1) at the image's size.
* ``pixnorm``: ProGAN's pixelwise feature normalisation (each pixel's feature vector
  scaled to unit RMS) after the Linear and after every ReLU of the decoder.
* ``gnorm``: GroupNorm (8 groups) after every ConvTranspose2d before ``out``.
* ``novae``: no VAE term (vae_weight 0) and the critic judging samples only: the plain
  WGAN-GP generator, to see whether the VAE's pull towards the mean makes the blobs.

Everything else as ``../screen_shapes/screen.py`` (the cpu preset, 2,000 steps, figures
at 1,000, 1,500 and 2,000). All runs at once, one process each, on one GPU:

    RUNS_DIR=/tmp/kinds_runs python docs/results/decoder_kinds/screen.py OUT

then ``python docs/results/decoder_kinds/screen.py OUT --collect`` writes OUT/results.json.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "screen_shapes"))
import screen  # noqa: E402  (the third screen's runner: trainer_for, judged_points, main)

ARMS = {
    "base": {}, "pixnorm": {}, "gnorm": {}, "resize": {}, "resize_pixnorm": {},
    "resize_gnorm": {}, "novae": {"vae_weight": 0.0, "adversarial_recon": False},
    "resize_gnorm_w64": {"widths": (64, 128, 256)}, "resize_pixnorm_w64": {"widths": (64, 128, 256)},
}
RUNS = [("base", 0), ("base", 1), ("pixnorm", 0), ("pixnorm", 1), ("gnorm", 0), ("gnorm", 1),
        ("resize", 0), ("resize", 1), ("resize_pixnorm", 0), ("resize_pixnorm", 1),
        ("resize_gnorm", 0), ("resize_gnorm", 1), ("novae", 0), ("novae", 1),
        ("resize_gnorm_w64", 0), ("resize_pixnorm_w64", 0)]
screen.KEEP = (*screen.KEEP, "shapes_named_recon", "recon_swd")
screen.STEPS = int(os.environ.get("STEPS", screen.STEPS))  # fewer for a trial run
screen.EVERY = int(os.environ.get("EVERY", screen.EVERY))
run_arm = screen.work


def patch_decoder(arm: str) -> None:
    """Change ``vidgen_nb.models.Decoder`` as the arm's name says (resize, pixnorm, gnorm)."""
    import torch
    from torch import nn

    from vidgen_nb import models

    class PixelNorm(nn.Module):
        """x / sqrt(mean over channels of x^2 + 1e-8), at every pixel (ProGAN)."""

        def forward(self, x):
            return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)

    resize, pixnorm, gnorm = "resize" in arm, "pixnorm" in arm, "gnorm" in arm
    if not (resize or pixnorm or gnorm):
        return
    original_init = models.Decoder.__init__

    def __init__(self, model_cfg):
        original_init(self, model_cfg)
        layers = []
        for layer in self.up:
            if resize and isinstance(layer, nn.ConvTranspose2d) and layer.stride == (2, 2):
                layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.ConvTranspose2d(layer.in_channels, layer.out_channels, 3, padding=1)]
            else:
                layers.append(layer)
            if gnorm and isinstance(layers[-1], nn.ConvTranspose2d):
                layers.append(nn.GroupNorm(8, layers[-1].out_channels))
            if pixnorm and isinstance(layer, nn.ReLU):
                layers.append(PixelNorm())
        self.up = nn.Sequential(*layers)
        self.first = PixelNorm() if pixnorm else nn.Identity()
        self.last = nn.Upsample(scale_factor=2, mode="nearest") if resize else nn.Identity()
        if resize:
            self.out = nn.ConvTranspose2d(self.out.in_channels, self.out.out_channels, 3, padding=1)
        # VAE.__init__ He-initialises every Linear and convolution after this returns.

    def features(self, z):
        h = self.first(torch.relu(self.fc(z)).view(-1, *self.shape))
        return self.last(self.up(h))

    models.Decoder.__init__, models.Decoder.features = __init__, features


def work(arm: str, seed: int, out: str, big: str, arms: dict = ARMS) -> tuple:
    patch_decoder(arm)
    return run_arm(arm, seed, out, big, arms)


if __name__ == "__main__":
    screen.work = work  # the runner submits this module's work, which patches first
    screen.main(sys.argv, ARMS, RUNS)
