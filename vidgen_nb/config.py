"""Every size in one place: dataclasses, named presets, derived sizes computed.

``Config.preset("tiny" | "cpu" | "seed")`` gives a complete configuration; change a
field with ``dataclasses.replace`` or ``Config.preset(name, **overrides)``. Every check
raises ``ValueError`` naming the field, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

# The decoder's last layer (weight and bias): it sets the colours and fine detail of
# every generated image, so changing it changes what a decoded noise vector looks like.
DEFAULT_DELTA_TARGETS = ("decoder.out.*",)
DELTA_MODES = ("per_sample", "batch_mean")
DELTA_PARAMS = ("dense", "channel", "lora")  # what a predicted number means (deltas.py)
# Where each image's delta comes from: the 3D CNN watching the image's synthetic video,
# or one learned delta shared by every image (an ablation: extra weights, no predictor).
DELTA_SOURCES = ("video", "constant")
# How the critic's blocks halve H and W: MaxPool2d, symmetric with the encoder as the
# seed has it, or AvgPool2d, whose gradient reaches every pixel of the judged image.
CRITIC_POOLS = ("max", "avg")
# How the decoder doubles H and W: a ConvTranspose2d(4x4, stride 2) as the seed has it,
# or a nearest-neighbour 2x upsampling and a ConvTranspose2d(3x3, stride 1) (the
# resize-convolution of Odena et al., 2016, which cannot draw a checkerboard).
DECODER_UPSAMPLES = ("transposed", "resize")
# What the decoder does to its features after every ReLU: nothing, or ProGAN's pixelwise
# normalisation (each pixel's feature vector scaled to unit RMS; no weights, per image).
DECODER_NORMS = ("none", "pixel")
# The built-in dataset's drawings (data/shapes.py): a large shape in the middle of a plain
# near-black image; one anywhere on near-black; one anywhere on a gradient.
BUILTIN_VARIANTS = ("centred", "dark", "gradient")
AUGMENTATIONS = ("color", "translation", "cutout")  # DiffAugment's transformations (augment.py)
FAST_ENV = "VIDGEN_NB_FAST"  # set to 1: notebooks use the tiny preset and few steps (CI does)


def fast_mode() -> bool:
    """True when ``$VIDGEN_NB_FAST`` is set to something other than '', '0' or 'false'."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false", "no")


def opt(default, help: str, *, flag: str | None = None, choices: tuple | None = None,
        switch: bool | None = None, words: dict | None = None):
    """A config field with what the command line needs to know of it (``options.py``).

    ``help``: one line for ``--help``; ``flag``: the option's name when not
    ``--field-name``; ``choices``: the values allowed; for a bool, ``switch``: the value
    a bare flag sets, or ``words``: the words that stand for True and False
    (default ``on`` / ``off``).
    """
    meta = {"help": help, "flag": flag, "choices": choices, "switch": switch, "words": words}
    return field(default=default, metadata=meta)


# Upper bounds on sizes, far above any use of the kit and far below what would exhaust a
# machine's memory before a single step: a mistyped or crafted size is refused by name.
LIMITS = {"image_size": 1024, "channels": 16, "latent_dim": 16384, "num_frames": 512,
          "predictor_filters": 4096, "predictor_blocks": 8, "predictor_hidden": 16384,
          "predictor_stride": 8, "delta_rank": 4096, "decoder_convs": 8, "critic_convs": 8,
          "widths": 4096, "critic_widths": 4096, "batch_size": 4096, "swd_images": 100_000,
          "num_classes": 1024, "builtin_per_class": 100_000,
          "prior_components": 1024,
          # Loops inside one training step: a step must end in seconds, so that Ctrl-C,
          # checkpoints and progress keep working (a count of 10**8 would never end).
          "n_critic": 100,
          "seed": 2**31 - 1}


def check_positive(name: str, value, upper: int | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 1 (not a
    bool) and, if given, at most ``upper``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    if upper is not None and value > upper:
        raise ValueError(f"{name}={value!r}: expected at most {upper}")


def check_one_of(name: str, value, choices: tuple) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {choices}")


def check_augment(policy) -> tuple[str, ...]:
    """``"color,cutout"`` -> ("color", "cutout"); ``ValueError`` naming an unknown one."""
    if not isinstance(policy, str):
        raise ValueError(f"augment={policy!r}: expected a string such as 'color,translation,cutout'")
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"augment={policy!r}: unknown {unknown}; expected a comma-separated "
                         f"list of {AUGMENTATIONS}, or '' for none")
    return names


def _widths(name: str, value) -> None:
    if not isinstance(value, tuple) or not value or len(value) > 8:
        raise ValueError(f"{name}={value!r}: expected a tuple of 1 to 8 positive integers")
    for i, w in enumerate(value):
        check_positive(f"{name}[{i}]", w, LIMITS[name])


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the VAE, the critic and the weight predictor."""

    image_size: int = opt(128, "H = W of every image")
    channels: int = opt(3, "image channels (RGB)")
    widths: tuple[int, ...] = opt((32, 64, 128, 256), "encoder conv widths; each block halves H, W")
    critic_widths: tuple[int, ...] = opt((32, 64, 128, 256), "critic conv widths, same rule")
    critic_pool: str = opt("max", "the critic's downsampling", choices=CRITIC_POOLS)
    decoder_convs: int = opt(1, "ConvTranspose2d layers per decoder resolution (extra ones 3x3, stride 1)")
    decoder_upsample: str = opt("transposed", "how the decoder doubles H and W", choices=DECODER_UPSAMPLES)
    decoder_norm: str = opt("none", "after every decoder ReLU", choices=DECODER_NORMS)
    critic_convs: int = opt(1, "Conv2d layers per critic block")
    critic_mbstd: bool = opt(False, "the critic also sees the minibatch standard deviation (ProGAN)",
                             switch=True)
    latent_dim: int = opt(128, "size of z, the noise vector the decoder turns into an image")
    num_classes: int = opt(0, "classes the VAE and the critic are conditioned on (the data's "
                           "ImageFolder sub-folders); 0: unconditional, noise alone as the seed has it")
    prior_components: int = opt(0, "a learned prior over the codes: per class, an equal mixture of this "
                                "many Gaussians trained with the VAE (prior.py); 0: N(0, I) as the seed has it")
    num_frames: int = opt(8, "T, frames of the synthetic video the predictor watches", flag="--frames")
    predictor_filters: int = opt(32, "Conv3d filters in every predictor block (the seed's 32)")
    predictor_blocks: int = opt(2, "Conv3d -> ReLU -> MaxPool3d blocks")
    # 2 lets the first Conv3d look at every frame in full detail (3x3x3 taps at every
    # other pixel) for a quarter of the FLOPs and activations.
    predictor_stride: int = opt(2, "spatial stride of the predictor's first Conv3d")
    predictor_hidden: int = opt(64, "width of the predictor head's hidden layer")
    delta_targets: tuple[str, ...] = opt(DEFAULT_DELTA_TARGETS, "VAE parameters the predictor "
                                         "adjusts (names or globs, e.g. 'decoder.out.*')",
                                         flag="--targets")
    delta_mode: str = opt("per_sample", "each image its own delta, or the batch mean", choices=DELTA_MODES)
    delta_param: str = opt("dense", "a number per weight, added (dense); per channel pair, scaling "
                           "theta (channel); or a low-rank product A B (lora)", choices=DELTA_PARAMS)
    delta_rank: int = opt(4, "r of the low-rank deltas A B (delta_param lora)")
    delta_source: str = opt("video", "the predictor watching each image's video, or one learned "
                            "delta for every image (an ablation)", choices=DELTA_SOURCES)

    def __post_init__(self):
        for name in ("image_size", "channels", "latent_dim", "num_frames", "predictor_filters",
                     "predictor_blocks", "predictor_hidden", "predictor_stride", "delta_rank",
                     "decoder_convs", "critic_convs"):
            check_positive(name, getattr(self, name), LIMITS[name])
        _widths("widths", self.widths)
        _widths("critic_widths", self.critic_widths)
        for name in ("widths", "critic_widths"):
            halvings = len(getattr(self, name))
            if self.image_size % 2**halvings:
                raise ValueError(
                    f"image_size={self.image_size}: the {halvings} blocks of {name} halve it "
                    f"{halvings} times, so it must be a multiple of {2**halvings}")
        if not isinstance(self.delta_targets, tuple) or not self.delta_targets or not all(
                isinstance(t, str) and t for t in self.delta_targets):
            raise ValueError(f"delta_targets={self.delta_targets!r}: expected a non-empty tuple of "
                             "parameter names or glob patterns, e.g. ('decoder.out.*',)")
        for name, zero in (("num_classes", "unconditional"), ("prior_components", "N(0, I)")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LIMITS[name]:
                raise ValueError(f"{name}={value!r}: expected an integer in 0..{LIMITS[name]} (0: {zero})")
        if not isinstance(self.critic_mbstd, bool):
            raise ValueError(f"critic_mbstd={self.critic_mbstd!r}: expected True or False")
        for name, choices in (("critic_pool", CRITIC_POOLS), ("decoder_upsample", DECODER_UPSAMPLES),
                              ("decoder_norm", DECODER_NORMS), ("delta_mode", DELTA_MODES),
                              ("delta_param", DELTA_PARAMS), ("delta_source", DELTA_SOURCES)):
            check_one_of(name, getattr(self, name), choices)

    @property
    def bottom_size(self) -> int:
        """H = W of the encoder's last feature map."""
        return self.image_size // 2 ** len(self.widths)

    @property
    def flat_size(self) -> int:
        """Width of the flattened encoder output (and of the decoder's first Linear)."""
        return self.widths[-1] * self.bottom_size**2

    @property
    def critic_flat_size(self) -> int:
        """Width of the flattened critic features feeding its Linear score."""
        return self.critic_widths[-1] * (self.image_size // 2 ** len(self.critic_widths)) ** 2


@dataclass(frozen=True)
class VideoConfig:
    """How a synthetic video is made from one image (amounts reached at the last frame)."""

    noise: float = opt(0.03, "std of the added noise field")
    shift: float = opt(2.0, "drift, in pixels (sub-pixel per frame)")
    zoom: float = opt(0.05, "relative zoom in or out")
    rotation: float = opt(3.0, "degrees")
    brightness: float = opt(0.1, "relative brightness change")
    detach: bool = opt(True, "cut gradients from the predictor back into the image")

    def __post_init__(self):
        for name in ("noise", "shift", "zoom", "rotation", "brightness"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}={value!r}: expected a number >= 0")


@dataclass(frozen=True)
class DataConfig:
    """The built-in dataset a run trains on when it is given no folder of its own."""

    builtin: str = opt("centred", "the built-in shapes' drawing (without --data)",
                       choices=BUILTIN_VARIANTS)
    builtin_per_class: int = opt(100, "images per class of the built-in dataset (without --data)")

    def __post_init__(self):
        check_one_of("builtin", self.builtin, BUILTIN_VARIANTS)
        check_positive("builtin_per_class", self.builtin_per_class, LIMITS["builtin_per_class"])


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Defaults follow the WGAN-GP references (Gulrajani et al., 2017)."""

    steps: int = opt(20000, "generator steps of the whole run")
    n_critic: int = opt(5, "critic steps per generator step")
    gp_weight: float = opt(10.0, "lambda, weight of the gradient penalty")
    lr: float = opt(1e-4, "Adam learning rate, generator (VAE + predictor) and critic")
    # A linear decay to zero at the end, as pix2pix and CycleGAN train (Isola et al., 2017).
    lr_decay: float = opt(0.0, "fraction of the run's last steps over which both learning rates "
                          "fall linearly to zero (a function of the step and --steps); 0: constant")
    betas: tuple[float, float] = opt((0.0, 0.9), "Adam betas")
    beta: float = opt(1.0, "weight of the KL term in the VAE loss (a beta-VAE's beta)")
    vae_weight: float = opt(1.0, "weight of the per-pixel VAE loss against -E[D(fake)]")
    # 1/sqrt(2) makes the VAE's likelihood the plain sum of squared errors.
    recon_sigma: float = opt(0.0, "scale of the VAE's Gaussian likelihood per value; 0: calibrated "
                             "to the batch's error (losses.gaussian_nll)")
    # One generator for samples and reconstructions alike; "base" gives the delta a job of its own.
    recon_through_generator: bool = opt(True, "decode reconstructions with theta + the delta of "
                                        "their own video (generator), or with theta alone (base)",
                                        flag="--recon-through", words={"generator": True, "base": False})
    adversarial_recon: bool = opt(False, "the critic also judges reconstructions (half its fakes), "
                                  "as in the VAE-GAN of Larsen et al. (2016)")
    # StyleGAN's G_ema: samples, SWD, videos and widgets use the average.
    ema_decay: float = opt(0.999, "weight averaging of the generator: after every step the average "
                           "moves 1 - ema_decay of the way to the trained weights; 0: off")
    augment: str = opt("", "DiffAugment policy for the critic's inputs, e.g. color,translation,cutout")
    use_predictor: bool = opt(True, "train the plain VAE-WGAN-GP, without the weight predictor",
                              flag="--no-predictor", switch=False)
    in_memory: bool = opt(True, "decode the dataset once into memory")
    num_workers: int = opt(2, "loader processes when not in memory")
    log_every: int = opt(10, "steps between metric lines and progress updates")
    sample_every: int = opt(200, "steps between sample grids")
    checkpoint_every: int = opt(200, "steps between checkpoints (and one at the end)")
    swd_images: int = opt(256, "images per set for the SWD quality measure")

    def __post_init__(self):
        for name in ("steps", "n_critic", "log_every", "sample_every", "checkpoint_every", "swd_images"):
            check_positive(name, getattr(self, name), LIMITS.get(name))
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) \
                or self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers!r}: expected an integer >= 0")
        for name in ("gp_weight", "beta", "vae_weight", "recon_sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < math.inf:  # NaN fails every comparison
                raise ValueError(f"{name}={value!r}: expected a finite number >= 0")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ValueError(f"lr={self.lr!r}: expected a number in (0, 1)")
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, (int, float)) \
                or not 0 <= self.lr_decay <= 1:
            raise ValueError(f"lr_decay={self.lr_decay!r}: expected a fraction of the run in [0, 1] (0: constant)")
        if isinstance(self.ema_decay, bool) or not isinstance(self.ema_decay, (int, float)) \
                or not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay!r}: expected a number in [0, 1) (0: off)")
        for name in ("recon_through_generator", "adversarial_recon", "use_predictor", "in_memory"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        check_augment(self.augment)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas={self.betas!r}: expected two numbers in [0, 1)")


@dataclass(frozen=True)
class Config:
    """A complete configuration: model sizes, synthetic video, built-in data, training, batch size."""

    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    batch_size: int = opt(16, "images per training step")
    seed: int = opt(0, "seeds weights, noise vectors and data order")

    def __post_init__(self):
        check_positive("batch_size", self.batch_size, LIMITS["batch_size"])
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= LIMITS["seed"]:
            raise ValueError(f"seed={self.seed!r}: expected an integer in 0..{LIMITS['seed']}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "Config":
        """A named configuration; ``overrides`` replace fields of it by name.

        ``tiny``: 16 px, for tests and fast notebook runs; ``cpu``: 32 px, learns visibly
        on a 2-core CPU in minutes; ``seed``: the seed's 128 px RGB, batch 16, 32 filters.
        """
        if name not in PRESETS:
            raise ValueError(f"preset={name!r}: expected one of {tuple(PRESETS)}")
        return PRESETS[name].replace(**overrides)

    def replace(self, **overrides) -> "Config":
        """A copy with fields changed, the sections' fields named directly."""
        sections = {**{name: {} for name in SECTIONS}, "top": {}}
        for key, value in overrides.items():
            for section in SECTIONS:
                if key in {f.name for f in dataclasses.fields(getattr(self, section))}:
                    sections[section][key] = value
                    break
            else:
                if key not in {f.name for f in dataclasses.fields(self)}:
                    raise ValueError(f"unknown config field {key!r}; known: {sorted(field_names())}")
                sections["top"][key] = value
        return dataclasses.replace(
            self,
            **{name: dataclasses.replace(getattr(self, name), **sections[name]) for name in SECTIONS},
            **sections["top"],
        )

    def to_dict(self) -> dict:
        """Plain nested dict (stored in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Inverse of ``to_dict`` (lists, as JSON stores them, become tuples again).

        Every field must be there: a config written before a field existed is refused
        naming what it lacks, never filled with today's default (which its run may not
        have used), except the fields of ``ADDED``, filled with what every run before them did.
        """
        def section(name, kind, values):
            if not isinstance(values, dict):
                raise ValueError(f"its config lacks the {name} section")
            values = {**{k: v for k, v in ADDED.items() if k in kind.__dataclass_fields__}, **values}
            missing = [f.name for f in dataclasses.fields(kind) if f.name not in values]
            if missing:
                raise ValueError(f"its config's {name} section lacks {missing}")
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        rest = {k: v for k, v in d.items() if k not in SECTIONS}
        return cls(**{name: section(name, kind, d.get(name)) for name, kind in SECTIONS.items()}, **rest)


# Fields added after runs were recorded (the shipped model, published studies), with the
# value that gives what those runs did: a config without them means that value.
ADDED = {"lr_decay": 0.0}  # before it, the learning rate was constant

SECTIONS = {"model": ModelConfig, "video": VideoConfig, "data": DataConfig, "train": TrainConfig}


def field_names() -> set[str]:
    """Every field name ``Config.replace`` accepts."""
    return {f.name for c in (*SECTIONS.values(), Config) for f in dataclasses.fields(c)} - set(SECTIONS)


PRESETS = {
    "tiny": Config(
        model=ModelConfig(image_size=16, widths=(8, 16), critic_widths=(8, 16), latent_dim=8,
                          num_frames=4, predictor_filters=8, predictor_hidden=16, predictor_stride=1),
        train=TrainConfig(steps=20, n_critic=2, sample_every=10, checkpoint_every=10,
                          swd_images=64),
        batch_size=4,
    ),
    # Tuned to learn visibly within `make train`'s minutes on a 2-core CPU: fewer critic
    # steps, a larger learning rate and a stronger VAE term than the references; an
    # unstrided predictor (a stride would leave it 16 px frames); a short weight average;
    # the critic judging reconstructions too; conditional on the class, with a small code
    # and a learned mixture prior, on 1,000 centred shapes a class. Each choice was
    # screened against the one before it: docs/training.md says what each study measured.
    "cpu": Config(
        model=ModelConfig(image_size=32, widths=(32, 64, 128), critic_widths=(32, 64, 128),
                          latent_dim=8, num_classes=4, prior_components=4, num_frames=6,
                          predictor_filters=16, predictor_hidden=32, predictor_stride=1),
        train=TrainConfig(steps=1000, n_critic=2, lr=2e-3, betas=(0.5, 0.9), gp_weight=5.0,
                          vae_weight=5.0, ema_decay=0.95, adversarial_recon=True,
                          sample_every=200, checkpoint_every=200),
        data=DataConfig(builtin="centred", builtin_per_class=1000),
        batch_size=32,
    ),
    "seed": Config(model=ModelConfig(), batch_size=16),
}
