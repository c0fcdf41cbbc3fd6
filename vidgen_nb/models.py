"""The three networks: the VAE (generator), the WGAN critic, and the weight predictor.

Every layer size comes from a ``ModelConfig``; nothing is typed by hand. Shapes use
B (batch), T (frames), C (channels), H, W (height, width).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .prior import MixturePrior


def he_init(layer: nn.Module, *, relu: bool = True) -> None:
    """He initialisation: weights N(0, gain^2 / fan_in), biases zero.

    With gain sqrt(2) before a ReLU (He et al., 2015) the signal keeps its size from layer
    to layer; with gain 1 before anything else. PyTorch's default starts about 2.5x
    smaller per layer: the VAE's images then start grey and it learns far more slowly
    (docs/training.md, "He initialisation").
    fan_in counts the inputs that reach one output: for a transposed convolution of
    stride s, in_channels * (k / s)^2.
    """
    w = layer.weight
    if isinstance(layer, nn.ConvTranspose2d):
        taps = w[0, 0].numel() / (layer.stride[0] * layer.stride[1])
        fan_in = w.shape[0] * taps
    else:
        fan_in = w[0].numel()
    gain = 2**0.5 if relu else 1.0
    with torch.no_grad():
        w.normal_(0, gain / fan_in**0.5)
        if layer.bias is not None:
            layer.bias.zero_()


def _down_blocks(channels: int, widths: tuple[int, ...], act: type[nn.Module],
                 pool: type[nn.Module] = nn.MaxPool2d, convs: int = 1) -> nn.Sequential:
    """(Conv2d(3x3) -> activation) x convs -> pool(2) per width: each block halves H and W."""
    layers, c_in = [], channels
    for w in widths:
        for _ in range(convs):
            layers += [nn.Conv2d(c_in, w, 3, padding=1), act()]
            c_in = w
        layers.append(pool(2))
    return nn.Sequential(*layers)


class PixelNorm(nn.Module):
    """ProGAN's pixelwise feature normalisation: (B, C, H, W) -> the same, each pixel's
    C features divided by their root mean square (plus 1e-8). No weights; per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class Decoder(nn.Module):
    """z (B, latent_dim) -> image (B, C, H, W) in [0, 1].

    Linear -> reshape -> ConvTranspose2d/ReLU blocks (each doubles H, W) -> Sigmoid.
    The last transposed convolution is ``out``, the default target of the weight deltas.
    With ``decoder_convs`` k > 1, every resolution below the image's gets k - 1 more
    ConvTranspose2d(3x3, stride 1)/ReLU layers after the layer that made it (the Linear
    or an upsampling block): depth to draw edges and corners, not only blend colours.
    ``decoder_upsample`` "resize" doubles H and W by nearest-neighbour upsampling and a
    ConvTranspose2d(3x3, stride 1) instead of a ConvTranspose2d(4x4, stride 2); ``out``
    then works at the image's size. ``decoder_norm`` "pixel" puts a ``PixelNorm`` after
    the Linear's ReLU and after every ReLU of ``up``.
    """

    def __init__(self, model_cfg: ModelConfig):
        super().__init__()
        self.shape = (model_cfg.widths[-1], model_cfg.bottom_size, model_cfg.bottom_size)
        # With classes, the input is z and the one-hot class together (``VAE.condition``).
        self.fc = nn.Linear(model_cfg.latent_dim + model_cfg.num_classes, model_cfg.flat_size)
        resize, pixel = model_cfg.decoder_upsample == "resize", model_cfg.decoder_norm == "pixel"

        def relu() -> list[nn.Module]:
            return [nn.ReLU(), PixelNorm()] if pixel else [nn.ReLU()]

        def refine(width: int) -> list[nn.Module]:  # decoder_convs - 1 x (3x3 layer, ReLU)
            return [layer for _ in range(model_cfg.decoder_convs - 1)
                    for layer in (nn.ConvTranspose2d(width, width, 3, padding=1), *relu())]

        def upsample(c_in: int, c_out: int) -> list[nn.Module]:  # doubles H and W
            if resize:
                return [nn.Upsample(scale_factor=2), nn.ConvTranspose2d(c_in, c_out, 3, padding=1)]
            return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]

        widths = model_cfg.widths[::-1]  # e.g. 256 -> ... -> 32
        ups = [PixelNorm()] if pixel else []  # for the Linear's ReLU
        ups += refine(widths[0])
        for c_in, c_out in zip(widths, widths[1:]):
            ups += [*upsample(c_in, c_out), *relu(), *refine(c_out)]
        # With "resize", ``up`` ends with the last doubling and ``out`` keeps H and W.
        self.up = nn.Sequential(*ups, *([nn.Upsample(scale_factor=2)] if resize else []))
        self.out = (nn.ConvTranspose2d(widths[-1], model_cfg.channels, 3, padding=1) if resize else
                    nn.ConvTranspose2d(widths[-1], model_cfg.channels, 4, stride=2, padding=1))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> the input of ``out``: (B, widths[0], H/2, W/2), or
        (B, widths[0], H, W) with ``decoder_upsample`` "resize"."""
        h = torch.relu(self.fc(z)).view(-1, *self.shape)  # (B, latent) -> (B, C', h, w)
        return self.up(h)

    def forward(self, z: torch.Tensor, *, from_features: bool = False) -> torch.Tensor:
        """z -> image (B, C, H, W); with ``from_features``, z is already ``features(z)``."""
        h = z if from_features else self.features(z)
        return torch.sigmoid(self.out(h))  # -> (B, C, H, W)


class VAE(nn.Module):
    """Variational autoencoder; its decoder is the image generator.

    ``forward(x)`` returns ``(x_hat, mu, logvar)``; ``decode(z)`` turns latent codes
    into images; ``sample_z(n)`` draws codes from the prior: N(0, I) as the seed has
    it, or with ``prior_components`` K > 0 the learned ``MixturePrior`` (``prior.py``),
    to which ``from_noise`` maps N(0, I) noise. Every layer starts from ``he_init``.

    With ``num_classes`` C > 0 the VAE is class-conditional: the encoder's mu and
    logvar layers and the decoder's first layer also see the one-hot class y, so
    ``encode(x, y)``, ``decode(z, y)`` and ``forward(x, y)`` take labels (B,) in [0, C).
    ``decode(z)`` without labels then decodes the classes 0, 1, ..., C-1, 0, ... in turn.
    """

    def __init__(self, model_cfg: ModelConfig):
        super().__init__()
        self.latent_dim, self.num_classes = model_cfg.latent_dim, model_cfg.num_classes
        self.encoder = _down_blocks(model_cfg.channels, model_cfg.widths, nn.ReLU)
        flat = model_cfg.flat_size + model_cfg.num_classes
        self.fc_mu = nn.Linear(flat, model_cfg.latent_dim)  # no activation: mu is any real
        self.fc_logvar = nn.Linear(flat, model_cfg.latent_dim)  # nor is log-variance
        self.decoder = Decoder(model_cfg)
        for layer in self.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                followed_by_relu = layer not in (self.fc_mu, self.fc_logvar, self.decoder.out)
                he_init(layer, relu=followed_by_relu)
        # Drawn last, so that a model without it starts from the same weights as before.
        self.prior = MixturePrior(model_cfg.latent_dim, model_cfg.num_classes,
                                  model_cfg.prior_components) if model_cfg.prior_components else None

    def labels(self, y: torch.Tensor | int | None, n: int, device: torch.device) -> torch.Tensor:
        """Checked class labels (n,): ``y`` itself, one class (an int) for all n, or the
        classes in turn when ``y`` is None. An unconditional VAE has one class, 0, whatever
        labels it is given (a dataset's carry nothing for it), and conditions on it with a
        one-hot of width zero, as stylegan2-ada's networks carry labels of ``c_dim = 0``.
        ``ValueError`` naming a bad label."""
        if y is None:
            y = torch.arange(n, device=device) % max(self.num_classes, 1)
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, device=device)
        if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype.is_floating_point:
            raise ValueError(f"labels: expected an integer tensor of shape ({n},), got "
                             f"{getattr(y, 'shape', type(y).__name__)}")
        if not self.num_classes:
            return torch.zeros(n, dtype=torch.long, device=device)
        bad = y[(y < 0) | (y >= self.num_classes)]
        if len(bad):
            raise ValueError(f"label {int(bad[0])}: expected a class in 0..{self.num_classes - 1}")
        return y.to(device)

    def condition(self, h: torch.Tensor, y: torch.Tensor | int | None) -> torch.Tensor:
        """(B, D) -> (B, D + num_classes): h and the one-hot class of ``labels(y)``; the
        one-hot has width zero when unconditional, so h comes back unchanged."""
        y = self.labels(y, len(h), h.device)
        one_hot = y[:, None] == torch.arange(self.num_classes, device=h.device)  # (B, num_classes)
        return torch.cat([h, one_hot.to(h.dtype)], dim=1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) (and its labels y (B,) when conditional) -> mu, logvar, each (B, latent_dim)."""
        if self.num_classes and y is None:
            raise ValueError("a class-conditional encoder needs the images' labels y")
        h = self.condition(self.encoder(x).flatten(1), y)  # (B, C', h, w) -> (B, C'*h*w [+ classes])
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): a sample differentiable in mu, logvar."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) (and labels y (B,) when conditional) -> image (B, C, H, W) in [0, 1]."""
        return self.decoder(self.condition(z, y))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """x (B, C, H, W) -> (x_hat, mu, logvar): reconstructions of a posterior sample."""
        mu, logvar = self.encode(x, y)
        return self.decode(self.reparameterize(mu, logvar), y), mu, logvar

    def from_noise(self, eps: torch.Tensor, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Noise vectors eps (B, latent_dim) ~ N(0, I) -> codes from the prior p(z | y):
        eps itself for N(0, I), else ``MixturePrior.from_noise`` with ``labels(y)``."""
        if not isinstance(eps, torch.Tensor) or eps.dim() != 2 or eps.shape[1] != self.latent_dim:
            shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(f"noise: expected vectors of shape (B, {self.latent_dim}), got {shape}")
        if self.prior is None:
            return eps
        return self.prior.from_noise(eps, self.labels(y, len(eps), eps.device))

    def sample_z(self, n: int, y: torch.Tensor | int | None = None, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (n, latent_dim) from the prior (of the classes ``labels(y)``), on the
        model's device."""
        device = self.fc_mu.weight.device
        return self.from_noise(torch.randn(n, self.latent_dim, device=device, generator=generator), y)



class Discriminator(nn.Module):
    """WGAN critic: image (B, C, H, W) -> unbounded realness score (B,).

    Blocks mirror the encoder's; LeakyReLU keeps a gradient for the gradient penalty
    everywhere; no sigmoid and no batch norm (it would couple the samples whose
    gradients the penalty treats one at a time). ``critic_pool`` "max" pools as the
    encoder does (the seed's symmetry); "avg" averages, so the critic's gradient with
    respect to an image reaches every pixel, not one in four per block.
    ``critic_convs`` convolutions per block; ``critic_mbstd`` adds the minibatch
    standard deviation as one more feature map before the score (``minibatch_std``).
    With ``num_classes`` C > 0 it judges image and class together, as the projection
    discriminator of Miyato & Koyama (2018): score = w . phi(x) + b + embed(y) . phi(x).
    """

    def __init__(self, model_cfg: ModelConfig):
        super().__init__()
        pool = nn.AvgPool2d if model_cfg.critic_pool == "avg" else nn.MaxPool2d
        self.features = _down_blocks(model_cfg.channels, model_cfg.critic_widths,
                                     lambda: nn.LeakyReLU(0.2), pool, model_cfg.critic_convs)
        self.mbstd = model_cfg.critic_mbstd
        side = model_cfg.image_size // 2 ** len(model_cfg.critic_widths)
        flat = model_cfg.critic_flat_size + (side**2 if self.mbstd else 0)
        self.score = nn.Linear(flat, 1)
        self.num_classes = model_cfg.num_classes
        # Zero at the start: the conditional critic begins as the unconditional one.
        self.embed = nn.Embedding(self.num_classes, flat) if self.num_classes else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) (and labels y (B,) when conditional) -> scores (B,)."""
        h = self.features(x)  # (B, C', h, w)
        if self.mbstd:
            h = minibatch_std(h)  # -> (B, C' + 1, h, w)
        h = h.flatten(1)
        score = self.score(h).squeeze(1)  # (B, 1) -> (B,)
        if self.embed is None:  # unconditional: labels, if any, carry nothing to judge
            return score
        if y is None:
            raise ValueError("a class-conditional critic needs the images' labels y")
        return score + (self.embed(y) * h).sum(1)  # the projection term

    @torch.no_grad()
    def probability(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """sigmoid(score), for display only: the score is what training uses."""
        return torch.sigmoid(self(x, y))


def minibatch_std(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """(B, C, H, W) -> (B, C + 1, H, W): one more map, how much the group's images differ.

    Karras et al. (2018, ProGAN, trained with WGAN-GP): split the batch into groups of
    ``group`` consecutive images (the largest divisor of B up to ``group``), take each
    feature's standard deviation over a group, average it over features and positions,
    and give every image of the group that number as a constant map. A generator whose
    images all look alike shows a small number the critic can learn to punish.
    Consecutive groups, not StyleGAN's strided ones: the critic judges real and fake
    images as one batch, real first, and a group must not mix the two.
    """
    B, C, H, W = h.shape
    g = next(d for d in range(min(group, B), 0, -1) if B % d == 0)
    y = h.float().view(B // g, g, C, H, W)
    std = (y.var(1, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (B / g,)
    maps = std.to(h.dtype).repeat_interleave(g).view(B, 1, 1, 1).expand(B, 1, H, W)
    return torch.cat([h, maps], 1)


class WeightPredictor3DCNN(nn.Module):
    """Synthetic video (B, T, C, H, W) -> flat weight update (B, output_size).

    Conv3d -> ReLU -> MaxPool3d blocks, global average pooling, then a two-layer head.
    Pooling makes the size independent of the video's T, H and W. The head's last
    layer starts at zero, so an untrained predictor leaves the VAE unchanged.
    ``stride`` is the first Conv3d's spatial stride (time is never strided): the
    largest activations of the whole model are that layer's, and stride 2 makes them,
    and the FLOPs of every block, four times smaller.
    """

    def __init__(self, output_size: int, *, in_channels: int = 3, num_filters: int = 32,
                 num_blocks: int = 2, hidden: int = 64, stride: int = 1):
        super().__init__()
        if output_size < 1:
            raise ValueError(f"output_size={output_size}: expected a positive integer "
                             "(the number of VAE weights to adjust)")
        layers, c_in = [], in_channels
        for block in range(num_blocks):
            # ceil_mode: odd sizes round up and a single frame stays one frame, so any
            # video size works (T, H, W each halve per block, down to 1).
            s = stride if block == 0 else 1
            layers += [nn.Conv3d(c_in, num_filters, 3, stride=(1, s, s), padding=1),
                       nn.ReLU(inplace=True), nn.MaxPool3d(2, ceil_mode=True)]
            c_in = num_filters
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1))
        self.head = nn.Sequential(nn.Linear(num_filters, hidden), nn.ReLU(),
                                  nn.Linear(hidden, output_size))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.output_size = output_size

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, output_size: int) -> "WeightPredictor3DCNN":
        return cls(output_size, in_channels=model_cfg.channels, num_filters=model_cfg.predictor_filters,
                   num_blocks=model_cfg.predictor_blocks, hidden=model_cfg.predictor_hidden,
                   stride=model_cfg.predictor_stride)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5:
            raise ValueError(f"video of shape {tuple(video.shape)}: expected (B, T, C, H, W)")
        h = self.features(video.transpose(1, 2))  # (B, T, C, H, W) -> (B, C, T, H, W) -> (B, F, 1, 1, 1)
        return self.head(h.flatten(1))  # -> (B, output_size)


class ConstantDelta(nn.Module):
    """One learned weight update shared by every image: a predictor that sees nothing.

    The ablation of ``WeightPredictor3DCNN``: the same number of adjusted weights,
    starting at zero as the predictor's head does, but no video and no network.
    ``forward`` takes a video (or any batch) only for its batch size.
    """

    def __init__(self, output_size: int):
        super().__init__()
        if output_size < 1:
            raise ValueError(f"output_size={output_size}: expected a positive integer "
                             "(the number of VAE weights to adjust)")
        self.delta = nn.Parameter(torch.zeros(output_size))
        self.output_size = output_size

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.delta.expand(len(batch), -1)  # (B, output_size), the same row for all


class CodeDelta(nn.Module):
    """A weight update from the decoder's input alone: code and one-hot class (B, D) ->
    delta (B, output_size), by a two-layer MLP whose last layer starts at zero.

    The control that says whether the video adds anything: the same deltas, applied
    the same way, from what the decoder already knows (self-modulation, Chen et al.,
    ICLR 2019, conditions a generator's normalisation on z in the same spirit).
    """

    def __init__(self, input_size: int, output_size: int, *, hidden: int = 64):
        super().__init__()
        if output_size < 1:
            raise ValueError(f"output_size={output_size}: expected a positive integer "
                             "(the number of VAE weights to adjust)")
        self.net = nn.Sequential(nn.Linear(input_size, hidden), nn.ReLU(), nn.Linear(hidden, output_size))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.output_size = output_size

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        return self.net(zc)  # (B, D) -> (B, output_size)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def layer_shapes(module: nn.Module, x: torch.Tensor) -> list[str]:
    """Run ``x`` through ``module`` and list each leaf layer with its output shape."""
    rows, hooks = [], []
    for name, layer in module.named_modules():
        if not list(layer.children()):
            hooks.append(layer.register_forward_hook(
                lambda m, args, out, name=name: rows.append(f"{name:<12} {type(m).__name__:<16} -> {tuple(out.shape)}")))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [f"{'input':<12} {'':<16} -> {tuple(x.shape)}"] + rows
