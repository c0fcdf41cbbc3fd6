"""The generator: the VAE's decoder, with weights the predictor adjusts for each image.

``Generator.generate(z)`` is the one definition of a generated image, used by training,
samples, SWD, the widgets and the generated videos alike:

    x_base = decoder(z; theta)                    the base decode
    video  = synthetic_video(x_base)              (B, T, C, H, W)
    delta  = predictor(video)                     (B, WEIGHT_UPDATE_SIZE)
    x      = decoder(z; theta + scale * delta)    the generated image

Without a predictor (the plain VAE-WGAN-GP) it is decoder(z; theta). Two controls
make no base decode and no video: ``delta_source = "constant"``, one learned delta
for every image, and ``"code"``, a delta from the decoder's input (code and class) by
a small MLP.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from .checkpoint import check_state, load_checkpoint, load_part
from .config import Config
from .deltas import WeightDeltas
from .models import VAE, CodeDelta, ConstantDelta, Discriminator, WeightPredictor3DCNN
from .video import critic_direction, guided_video, synthetic_video


class Generator(nn.Module):
    """The VAE, the optional weight predictor and the selection of weights it adjusts.

    Args:
        config: the run's configuration (delta targets and mode, frames, video settings).
        vae: the VAE whose decoder generates.
        predictor: its output width must be the selection's ``weight_update_size``;
            None for the plain VAE-WGAN-GP.

    ``Generator.build(config)`` makes fresh networks; ``from_checkpoint`` loads them.
    """

    def __init__(self, config: Config, vae: VAE, predictor: WeightPredictor3DCNN | ConstantDelta | CodeDelta | None):
        super().__init__()
        self.config, self.vae, self.predictor = config, vae, predictor
        # The critic whose gradient guides the video (video.critic_step > 0): held in a
        # tuple, so that it is not one of the generator's modules and never trained with it.
        self.guide: tuple[nn.Module, ...] = ()
        # False while the predictor waits for train.predictor_from: generate() is then the
        # plain decode (``step.set_phase`` sets it).
        self.predicting = True
        m = config.model
        self.deltas = WeightDeltas(vae, m.delta_targets, m.delta_mode, m.delta_param, m.delta_rank)
        if predictor is not None and predictor.output_size != self.deltas.weight_update_size:
            raise ValueError(f"predictor output_size={predictor.output_size}: expected "
                             f"WEIGHT_UPDATE_SIZE = {self.deltas.weight_update_size} for the "
                             f"targets {m.delta_targets}")

    @staticmethod
    def new_predictor(config: Config, vae: VAE) -> WeightPredictor3DCNN | ConstantDelta | CodeDelta:
        """A fresh predictor sized for the weights ``config`` selects in ``vae``
        (a ``ConstantDelta`` or a ``CodeDelta`` for those ``delta_source`` values)."""
        m = config.model
        size = WeightDeltas(vae, m.delta_targets, param=m.delta_param, rank=m.delta_rank).weight_update_size
        if m.delta_source == "constant":
            return ConstantDelta(size)
        if m.delta_source == "code":
            return CodeDelta(m.latent_dim + m.num_classes, size, hidden=m.predictor_hidden)
        return WeightPredictor3DCNN.from_config(config.model, size)

    @classmethod
    def build(cls, config: Config, vae: VAE | None = None) -> "Generator":
        """Fresh networks for ``config``: a new VAE unless one is given, and a new
        predictor for it when ``use_predictor``."""
        vae = VAE(config.model) if vae is None else vae
        if not config.train.use_predictor:
            return cls(config, vae, None)
        if not config.train.predictor_from:
            return cls(config, vae, cls.new_predictor(config, vae))
        # A predictor that starts later is drawn from a stream of its own, so that the
        # run before it is the plain VAE-WGAN-GP's, to the bit.
        with torch.random.fork_rng(devices=[]):  # the CPU's stream, where modules are built
            torch.random.default_generator.manual_seed(config.seed + 104729)
            return cls(config, vae, cls.new_predictor(config, vae))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Generator":
        """A training checkpoint's generator (in eval mode), without critic or optimisers.

        The weight average (``generator_ema``) when the run kept one, as samples use it.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a vidgen_nb checkpoint, or its weights do not fit its config.
        """
        try:
            state = load_checkpoint(path)
        except ValueError as exc:
            raise ValueError(f"{path} is not a vidgen_nb checkpoint ({exc})") from None
        config = check_state(state, path, training=False)
        vae = VAE(config.model)
        predictor = cls.new_predictor(config, vae) if state.get("predictor") is not None else None
        generator = cls(config, vae, predictor)
        # A predictor waiting for train.predictor_from is not used yet (step.set_phase).
        generator.predicting = not config.train.predictor_from or state["step"] > config.train.predictor_from
        try:
            if state.get("generator_ema") is not None:
                load_part(generator, state["generator_ema"], "generator_ema")
            else:
                load_part(vae, state["vae"], "vae")
                if predictor is not None:
                    load_part(predictor, state["predictor"], "predictor")
            if predictor is not None and config.video.critic_step:  # its video needs the critic
                critic = Discriminator(config.model)
                load_part(critic, state["critic"], "critic")
                generator.use_critic(critic.eval())
        except ValueError as exc:
            raise ValueError(f"checkpoint {path}: its weights do not fit its own config; {exc}") from None
        generator.guide = tuple(critic.to(device) for critic in generator.guide)
        return generator.to(device).eval()

    def use_critic(self, critic: nn.Module) -> "Generator":
        """Let ``critic`` guide the synthetic video (when ``video.critic_step`` > 0)."""
        self.guide = (critic,)
        return self

    @property
    def num_frames(self) -> int:
        """T, the frames of the synthetic video the predictor watches."""
        return self.config.model.num_frames

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def predict_delta(self, images: torch.Tensor, *, seed: int | None = None,
                      y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> their synthetic videos -> delta (B, WEIGHT_UPDATE_SIZE).

        ``seed`` fixes the video's randomness (else the global random stream is used);
        ``y``, the images' classes, is what a conditional critic guiding the video judges.
        """
        if self.predictor is None:
            raise ValueError("this generator has no weight predictor (trained with --no-predictor)")
        if isinstance(self.predictor, CodeDelta):
            raise ValueError("this generator's deltas come from its codes, not from images "
                             "(delta_source code): use generate(z, return_delta=True)")
        video = synthetic_video(images, self.num_frames, self.config.video, seed=seed)
        if self.config.video.critic_step:
            if not self.guide:
                raise ValueError("video.critic_step > 0 needs the critic: Generator.use_critic(critic)")
            direction = critic_direction(self.guide[0], images, self.vae.labels(y, len(images), images.device))
            video = guided_video(video, direction, self.config.video.critic_step)
        return self.predictor(video)  # (B, T, C, H, W) -> (B, WEIGHT_UPDATE_SIZE)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None, *, scale: float = 1.0,
                 seed: int | None = None, return_delta: bool = False):
        """Codes z (B, latent_dim) -> generated images (B, C, H, W) in [0, 1].

        Under the seed's N(0, I) prior the codes are the noise vectors themselves; under
        a learned prior, ``vae.from_noise`` of them (``evaluation.samples`` for the
        fixed samples).

        With the predictor: decode, make the synthetic video, predict delta, decode again
        with theta + scale * delta. ``y`` (B,) or one int: the classes asked for, when the
        model is class-conditional (default: each class in turn). ``seed`` fixes the video's
        randomness. With ``return_delta``, returns (images, delta), delta None without a
        predictor.
        """
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.vae.latent_dim or not len(z):
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z: expected noise vectors of shape (B, {self.vae.latent_dim}) with "
                             f"B >= 1, got {shape}")
        zc = self.vae.condition(z, y)  # the decoder's input: z and the one-hot class (width 0 if none)
        if self.predictor is None or not self.predicting:
            x = self.vae.decoder(zc)
            return (x, None) if return_delta else x
        if isinstance(self.predictor, ConstantDelta):  # nothing to watch: no base decode
            delta = self.predictor(z)  # every row the same, so their mean is exact and cheaper
            x = self.deltas.decode(zc, delta, scale=scale, mode="batch_mean")
            return (x, delta) if return_delta else x
        if isinstance(self.predictor, CodeDelta):  # the decoder's own input: no base decode
            delta = self.predictor(zc)
            x = self.deltas.decode(zc, delta, scale=scale)
            return (x, delta) if return_delta else x
        # With only the output layer patched, both decodes share every layer before it.
        h = self.vae.decoder.features(zc) if self.deltas.output_layer_only else None
        with torch.no_grad() if self.config.video.detach else contextlib.nullcontext():
            base = self.vae.decoder(zc) if h is None else self.vae.decoder(h, from_features=True)
        delta = self.predict_delta(base, seed=seed, y=y)
        x = self.deltas.decode(zc, delta, scale=scale, features=h)
        return (x, delta) if return_delta else x

    def decode_codes(self, z: torch.Tensor, y: torch.Tensor | None = None, *,
                     seed: int | None = None) -> torch.Tensor:
        """Codes z (B, latent_dim) -> images as reconstructions are decoded: by the whole
        generator (theta + the delta of the image's own video) or by theta alone, as
        ``recon_through_generator`` says (read here only)."""
        if self.config.train.recon_through_generator:
            return self.generate(z, y=y, seed=seed)
        return self.vae.decode(z, y)

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Training's reconstructions: real x (B, C, H, W) (and labels y (B,)) -> x_hat,
        mu, logvar, z, where x_hat decodes (``decode_codes``) a posterior sample
        z = mu + sigma * eps."""
        mu, logvar = self.vae.encode(x, y)
        z = self.vae.reparameterize(mu, logvar)
        return self.decode_codes(z, y), mu, logvar, z

    def sample_noise(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        """n noise vectors (n, latent_dim) from N(0, I) on the generator's device (the
        codes of a learned prior are ``vae.from_noise`` of them; ``vae.sample_z`` draws
        codes directly).

        With ``seed``, drawn on the CPU from their own generator (the same vectors on
        any device, and the global random stream untouched); else from the global stream.
        """
        if seed is None:
            return torch.randn(n, self.vae.latent_dim, device=self.device)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.vae.latent_dim, generator=g).to(self.device)
