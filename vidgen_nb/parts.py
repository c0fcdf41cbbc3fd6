"""The parts one training iteration touches, built for a ``Config``.

``build_parts`` makes the generator (``Generator.build``: the VAE and the predictor),
its weight average, the critic, both optimisers, and the modules backward passes run
through (DistributedDataParallel wrappers when several processes train), in the
memory layout that is fastest on the device. ``step.py`` holds the math that uses them.
"""

from __future__ import annotations

import copy
from typing import Callable, ContextManager

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .config import Config
from .generator import Generator
from .models import VAE, Discriminator
from .step import GeneratorPass, Parts


def build_parts(config: Config, device: torch.device, *, precision: str, rank: int = 0,
                world_size: int = 1, generator_class: type[Generator] = Generator,
                autocast: Callable[[], ContextManager], check_finite: Callable) -> Parts:
    """Fresh networks and optimisers for ``config`` on ``device``, drawn from its seed.

    ``generator_class``: what the generator is built as (the bench swaps in its
    reference); ``autocast`` and ``check_finite`` go into the ``Parts`` as they are.
    """
    t = config.train
    if world_size > 1 and t.predictor_from:  # DDP's buckets expect a gradient for every weight
        raise ValueError(f"predictor_from={t.predictor_from}: freezing the VAE mid-run is for one "
                         "process; train without torchrun")
    # Drawn in this order from the seed: VAE, critic, predictor (fixes every run's start).
    torch.manual_seed(config.seed)
    vae = VAE(config.model)
    critic = Discriminator(config.model).to(device)
    generator = generator_class.build(config, vae).to(device)
    if device.type in ("cuda", "cpu"):
        channels_last(generator, critic, bf16_cpu=device.type == "cpu" and precision == "bf16")
    generator_ema = generator
    if t.ema_decay > 0:  # a copy that follows the trained weights slowly, never trained itself
        generator_ema = copy.deepcopy(generator).requires_grad_(False).eval()
    for g in {generator, generator_ema}:  # the live critic guides both one's videos (critic_step)
        g.use_critic(critic)
    opt_g = torch.optim.Adam(generator.parameters(), lr=t.lr, betas=t.betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=t.lr, betas=t.betas)
    if rank:  # each process draws its own noise; rank 0 keeps the single-process stream
        torch.manual_seed(config.seed + 7919 * rank)
    generator_pass: nn.Module = GeneratorPass(generator)
    critic_net: nn.Module = critic
    if world_size > 1:  # PyTorch's DDP averages the gradients across processes
        ids = [device.index] if device.type == "cuda" else None
        generator_pass, critic_net = DDP(generator_pass, device_ids=ids), DDP(critic, device_ids=ids)
    return Parts(generator, critic, generator_ema, opt_g, opt_d, generator_pass, critic_net,
                 autocast, check_finite)


def channels_last(generator: Generator, critic: nn.Module, *, bf16_cpu: bool) -> None:
    """NHWC layouts: faster convolutions on tensor cores, and on CPUs (oneDNN) faster
    max pooling and no layout conversion around every convolution."""
    generator.vae.to(memory_format=torch.channels_last)
    critic.to(memory_format=torch.channels_last)
    # (B, C, T, H, W) stored as (B, T, H, W, C); not in bf16 on a CPU, where oneDNN's
    # channels-last Conv3d backward returned NaN weight gradients.
    if generator.predictor is not None and not bf16_cpu:
        generator.predictor.to(memory_format=torch.channels_last_3d)
