"""Every size in one place: dataclasses, named presets, derived sizes computed.

``Config.preset("tiny" | "cpu" | "seed")`` gives a complete configuration; change a
field with ``dataclasses.replace`` or ``Config.preset(name, **overrides)``. Every field
says what it allows (``opt``), and ``check_fields`` refuses anything else with a
``ValueError`` naming the field, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from dataclasses import dataclass, field

# The decoder's last layer (weight and bias): it sets the colours and fine detail of every image.
DEFAULT_DELTA_TARGETS = ("decoder.out.*",)
DELTA_MODES = ("per_sample", "batch_mean")
DELTA_PARAMS = ("dense", "channel", "lora")  # what a predicted number means (deltas.py)
# Each image's delta: from the 3D CNN watching its video, or one learned for all (an ablation).
DELTA_SOURCES = ("video", "constant", "code")
# The critic's halving: MaxPool2d like the encoder (the seed's), or AvgPool2d, reaching every pixel.
CRITIC_POOLS = ("max", "avg")
# The seed's ConvTranspose2d(4x4, stride 2), or a checkerboard-free resize-convolution (Odena et al., 2016).
DECODER_UPSAMPLES = ("transposed", "resize")
# After every decoder ReLU: nothing, or ProGAN's pixelwise norm (each pixel's features to unit RMS).
DECODER_NORMS = ("none", "pixel")
# data/shapes.py: a large shape centred on near-black; one anywhere on near-black; or on a gradient.
BUILTIN_VARIANTS = ("centred", "dark", "gradient")
AUGMENTATIONS = ("color", "translation", "cutout")  # DiffAugment's transformations (augment.py)
FAST_ENV = "VIDGEN_NB_FAST"  # set to 1: notebooks use the tiny preset and few steps (CI does)


def fast_mode() -> bool:
    """True when ``$VIDGEN_NB_FAST`` is set to something other than '', '0' or 'false'."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false", "no")


def opt(default, help: str, *, flag: str | None = None, choices: tuple | None = None,
        switch: bool | None = None, words: dict | None = None, low=None, high=None,
        above=None, below=None, zero: str | None = None, what: str | None = None):
    """A config field with what the command line (``options.py``) and ``check_fields`` need.

    ``help``: one line for ``--help``; ``flag``: the option's name when not ``--field-name``;
    ``choices``: the values allowed; for a bool, ``switch``: the value a bare flag sets, or
    ``words``: the words for True and False (default ``on`` / ``off``). The bounds of a
    number, or of each item of a tuple of integers: ``low <= value <= high`` and ``above <
    value < below`` (``below=math.inf``: finite); a size's ``high`` lies far above any use
    and far below what exhausts a machine, so that a mistyped size is refused by name. In
    messages, ``zero`` says what 0 means and ``what`` names the value when not "a number".
    """
    meta = {"help": help, "flag": flag, "choices": choices, "switch": switch, "words": words,
            "low": low, "high": high, "above": above, "below": below, "zero": zero, "what": what}
    return field(default=default, metadata=meta)


def check_positive(name: str, value, upper: int | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer (no bool) in 1..``upper``."""
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


def check_number(name: str, value, kind: type, meta) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a number of type ``kind`` (a
    bool is none, nor is NaN) within the bounds of ``meta``, an ``opt``'s metadata."""
    low, high, above, below = (meta[k] for k in ("low", "high", "above", "below"))
    if kind is int and low == 1:  # a size or a count: its message names the bound crossed
        return check_positive(name, value, high)
    numbers = int if kind is int else (int, float)  # a float field takes 2 as JSON may store it
    if (not isinstance(value, bool) and isinstance(value, numbers) and value == value
            and (low is None or value >= low) and (high is None or value <= high)
            and (above is None or value > above) and (below is None or value < below)):
        return
    zero = f" (0: {meta['zero']})" if meta["zero"] else ""
    if kind is int:
        rule = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}{zero}"
    elif high is None and below in (None, math.inf):  # below infinity: finite
        rule = f"{'a finite number' if below else 'a number'} >= {low}"
    else:
        lower = f"[{low}" if above is None else f"({above}"
        upper = f"{high}]" if below is None else f"{below})"
        rule = f"{meta['what'] or 'a number'} in {lower}, {upper}{zero}"
    raise ValueError(f"{name}={value!r}: expected {rule}")


def check_value(name: str, value, kind, meta) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is of type ``kind`` and within
    the choices and bounds of ``meta`` (an ``opt``'s metadata)."""
    if meta["choices"]:
        check_one_of(name, value, meta["choices"])
    elif kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: expected True or False")
    elif kind in (int, float):
        check_number(name, value, kind, meta)
    elif kind == tuple[int, ...]:  # widths: each item a block halving H and W (1024 px / 2**8 = 4)
        if not isinstance(value, tuple) or not 1 <= len(value) <= 8:
            raise ValueError(f"{name}={value!r}: expected a tuple of 1 to 8 positive integers")
        for i, item in enumerate(value):
            check_number(f"{name}[{i}]", item, int, meta)


@functools.cache  # read once per class: get_type_hints evaluates every annotation's string
def field_types(kind: type) -> dict:
    """The type of every field of the dataclass ``kind``, e.g. ``{"lr": float, ...}``."""
    return typing.get_type_hints(kind)


def check_fields(config) -> None:
    """Check every ``opt`` field of the dataclass ``config``: type, choices and bounds. What
    metadata cannot say (two fields together, a tuple of strings) ``__post_init__`` checks after."""
    types = field_types(type(config))
    for f in dataclasses.fields(config):
        if "help" in f.metadata:
            check_value(f.name, getattr(config, f.name), types[f.name], f.metadata)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the VAE, the critic and the weight predictor."""

    image_size: int = opt(128, "H = W of every image", low=1, high=1024)
    channels: int = opt(3, "image channels (RGB)", low=1, high=16)
    widths: tuple[int, ...] = opt((32, 64, 128, 256), "encoder conv widths; each block halves H, W",
                                  low=1, high=4096)
    critic_widths: tuple[int, ...] = opt((32, 64, 128, 256), "critic conv widths, same rule", low=1, high=4096)
    critic_pool: str = opt("max", "the critic's downsampling", choices=CRITIC_POOLS)
    decoder_convs: int = opt(1, "ConvTranspose2d layers per decoder resolution (extra ones 3x3, stride 1)",
                             low=1, high=8)
    decoder_upsample: str = opt("transposed", "how the decoder doubles H and W", choices=DECODER_UPSAMPLES)
    decoder_norm: str = opt("none", "after every decoder ReLU", choices=DECODER_NORMS)
    critic_convs: int = opt(1, "Conv2d layers per critic block", low=1, high=8)
    critic_mbstd: bool = opt(False, "the critic also sees the minibatch standard deviation (ProGAN)",
                             switch=True)
    latent_dim: int = opt(128, "size of z, the noise vector the decoder turns into an image",
                          low=1, high=16384)
    num_classes: int = opt(0, "classes the VAE and the critic are conditioned on (the data's "
                           "ImageFolder sub-folders); 0: unconditional, noise alone as the seed has it",
                           low=0, high=1024, zero="unconditional")
    prior_components: int = opt(0, "a learned prior over the codes: per class, an equal mixture of this "
                                "many Gaussians trained with the VAE (prior.py); 0: N(0, I) as the seed has it",
                                low=0, high=1024, zero="N(0, I)")
    num_frames: int = opt(8, "T, frames of the synthetic video the predictor watches", flag="--frames",
                          low=1, high=512)
    predictor_filters: int = opt(32, "Conv3d filters in every predictor block (the seed's 32)",
                                 low=1, high=4096)
    predictor_blocks: int = opt(2, "Conv3d -> ReLU -> MaxPool3d blocks", low=1, high=8)
    # 2 lets the first Conv3d see every frame in full detail for a quarter of the FLOPs.
    predictor_stride: int = opt(2, "spatial stride of the predictor's first Conv3d", low=1, high=8)
    predictor_hidden: int = opt(64, "width of the predictor head's hidden layer", low=1, high=16384)
    delta_targets: tuple[str, ...] = opt(DEFAULT_DELTA_TARGETS, "VAE parameters the predictor "
                                         "adjusts (names or globs, e.g. 'decoder.out.*')",
                                         flag="--targets")
    delta_mode: str = opt("per_sample", "each image its own delta, or the batch mean", choices=DELTA_MODES)
    delta_param: str = opt("dense", "a number per weight, added (dense); per channel pair, scaling "
                           "theta (channel); or a low-rank product A B (lora)", choices=DELTA_PARAMS)
    delta_rank: int = opt(4, "r of the low-rank deltas A B (delta_param lora)", low=1, high=4096)
    delta_source: str = opt("video", "the predictor watching each image's video; one learned delta "
                            "for every image; or a delta from the code and class alone, by a small "
                            "MLP (self-modulation: no video); the last two are controls",
                            choices=DELTA_SOURCES)

    def __post_init__(self):
        check_fields(self)
        for name in ("widths", "critic_widths"):
            halvings = len(getattr(self, name))
            if self.image_size % 2**halvings:
                raise ValueError(f"image_size={self.image_size}: the {halvings} blocks of {name} halve it "
                                 f"{halvings} times, so it must be a multiple of {2**halvings}")
        if not isinstance(self.delta_targets, tuple) or not self.delta_targets or not all(
                isinstance(t, str) and t for t in self.delta_targets):
            raise ValueError(f"delta_targets={self.delta_targets!r}: expected a non-empty tuple of "
                             "parameter names or glob patterns, e.g. ('decoder.out.*',)")

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

    noise: float = opt(0.03, "std of the added noise field", low=0)
    shift: float = opt(2.0, "drift, in pixels (sub-pixel per frame)", low=0)
    zoom: float = opt(0.05, "relative zoom in or out", low=0)
    rotation: float = opt(3.0, "degrees", low=0)
    brightness: float = opt(0.1, "relative brightness change", low=0)
    detach: bool = opt(True, "cut gradients from the predictor back into the image")
    critic_step: float = opt(0.0, "critic guidance: frame k also moves the image k times this far "
                             "along the critic's gradient (scaled per image to an RMS of 1 per "
                             "value): the video shows what the critic would change", low=0,
                             below=math.inf, zero="no guidance")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class DataConfig:
    """The built-in dataset a run trains on when it is given no folder of its own."""

    builtin: str = opt("centred", "the built-in shapes' drawing (without --data)", choices=BUILTIN_VARIANTS)
    builtin_per_class: int = opt(100, "images per class of the built-in dataset (without --data)",
                                 low=1, high=100_000)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Defaults follow the WGAN-GP references (Gulrajani et al., 2017)."""

    steps: int = opt(20000, "generator steps of the whole run", low=1)
    # At most 100 loops in a step: a step must end in seconds, for Ctrl-C, checkpoints and progress.
    n_critic: int = opt(5, "critic steps per generator step", low=1, high=100)
    gp_weight: float = opt(10.0, "lambda, weight of the gradient penalty", low=0, below=math.inf)
    lr: float = opt(1e-4, "Adam learning rate, generator (VAE + predictor) and critic", above=0, below=1)
    # A linear decay to zero at the end, as pix2pix and CycleGAN train (Isola et al., 2017).
    lr_decay: float = opt(0.0, "fraction of the run's last steps over which both learning rates "
                          "fall linearly to zero (a function of the step and --steps); 0: constant",
                          low=0, high=1, zero="constant", what="a fraction of the run")
    betas: tuple[float, float] = opt((0.0, 0.9), "Adam betas")
    beta: float = opt(1.0, "weight of the KL term in the VAE loss (a beta-VAE's beta)", low=0, below=math.inf)
    delta_penalty: float = opt(0.0, "weight of each image's squared weight change relative to the "
                               "weights it changes, ||delta||^2 / ||theta||^2, in the generator's "
                               "loss: theta must then draw alone, and delta becomes a per-image "
                               "correction", low=0, below=math.inf, zero="none")
    vae_weight: float = opt(1.0, "weight of the per-pixel VAE loss against -E[D(fake)]", low=0, below=math.inf)
    # 1/sqrt(2) makes the VAE's likelihood the plain sum of squared errors.
    recon_sigma: float = opt(0.0, "scale of the VAE's Gaussian likelihood per value; 0: calibrated "
                             "to the batch's error (losses.gaussian_nll)", low=0, below=math.inf)
    # One generator for samples and reconstructions alike; "base" gives the delta a job of its own.
    recon_through_generator: bool = opt(True, "decode reconstructions with theta + the delta of "
                                        "their own video (generator), or with theta alone (base)",
                                        flag="--recon-through", words={"generator": True, "base": False})
    adversarial_recon: bool = opt(False, "the critic also judges reconstructions (half its fakes), "
                                  "as in the VAE-GAN of Larsen et al. (2016)")
    # StyleGAN's G_ema: samples, SWD, videos and widgets use the average.
    ema_decay: float = opt(0.999, "weight averaging of the generator: after every step the average "
                           "moves 1 - ema_decay of the way to the trained weights; 0: off",
                           low=0, below=1, zero="off")
    augment: str = opt("", "DiffAugment policy for the critic's inputs, e.g. color,translation,cutout")
    use_predictor: bool = opt(True, "train the plain VAE-WGAN-GP, without the weight predictor",
                              flag="--no-predictor", switch=False)
    predictor_from: int = opt(0, "from this step on the VAE is frozen (as its weight average is then) "
                              "and only the predictor and the critic train (HyperStyle's regime); before "
                              "it the plain VAE-WGAN-GP trains, the predictor unused", low=0, zero="from the start")
    in_memory: bool = opt(True, "decode the dataset once into memory")
    num_workers: int = opt(2, "loader processes when not in memory", low=0)
    log_every: int = opt(10, "steps between metric lines and progress updates", low=1)
    sample_every: int = opt(200, "steps between sample grids", low=1)
    checkpoint_every: int = opt(200, "steps between checkpoints (and one at the end)", low=1)
    swd_images: int = opt(256, "images per set for the SWD quality measure", low=1, high=100_000)

    def __post_init__(self):
        check_fields(self)
        check_augment(self.augment)
        if self.predictor_from and not self.use_predictor:  # the predictor starts then: it needs one
            raise ValueError(f"predictor_from={self.predictor_from}: needs the predictor (not --no-predictor)")
        if not isinstance(self.betas, tuple) or len(self.betas) != 2 or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas={self.betas!r}: expected two numbers in [0, 1)")


@dataclass(frozen=True)
class Config:
    """A complete configuration: model sizes, synthetic video, built-in data, training, batch size."""

    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    batch_size: int = opt(16, "images per training step", low=1, high=4096)
    seed: int = opt(0, "seeds weights, noise vectors and data order", low=0, high=2**31 - 1)

    def __post_init__(self):
        check_fields(self)

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
ADDED = {"lr_decay": 0.0,  # before it, the learning rate was constant
         "critic_step": 0.0,  # before it, the video was the random one alone
         "delta_penalty": 0.0,  # before it, nothing held the deltas' size
         "predictor_from": 0}  # before it, the predictor trained with the VAE from the start

SECTIONS = {"model": ModelConfig, "video": VideoConfig, "data": DataConfig, "train": TrainConfig}


def field_names() -> set[str]:
    """Every field name ``Config.replace`` accepts."""
    return {f.name for c in (*SECTIONS.values(), Config) for f in dataclasses.fields(c)} - set(SECTIONS)


PRESETS = {
    "tiny": Config(
        model=ModelConfig(image_size=16, widths=(8, 16), critic_widths=(8, 16), latent_dim=8,
                          num_frames=4, predictor_filters=8, predictor_hidden=16, predictor_stride=1),
        train=TrainConfig(steps=20, n_critic=2, sample_every=10, checkpoint_every=10, swd_images=64),
        batch_size=4),
    # Tuned to learn visibly in `make train`'s minutes on a 2-core CPU: see docs/training.md.
    "cpu": Config(
        model=ModelConfig(image_size=32, widths=(32, 64, 128), critic_widths=(32, 64, 128),
                          latent_dim=8, num_classes=4, prior_components=4, num_frames=6,
                          predictor_filters=16, predictor_hidden=32, predictor_stride=1),
        train=TrainConfig(steps=1000, n_critic=2, lr=2e-3, betas=(0.5, 0.9), gp_weight=5.0,
                          vae_weight=5.0, ema_decay=0.95, adversarial_recon=True,
                          sample_every=200, checkpoint_every=200),
        data=DataConfig(builtin="centred", builtin_per_class=1000),
        batch_size=32),
    "seed": Config(model=ModelConfig(), batch_size=16),
}
