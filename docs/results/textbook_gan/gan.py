"""Can a textbook GAN draw the built-in shapes in make train's budget of steps?

    python docs/results/textbook_gan/gan.py 4000 '{"seed": 0}'

A reference outside the seed's architecture, to tell apart "this model is slow to learn
shapes" from "the data cannot be learned in so few steps": the DCGAN of Radford et al.
(2016) as Gulrajani et al. (2017) trained it with WGAN-GP on CIFAR-10 (generator:
Linear to 4x4, ConvTranspose2d(4x4, stride 2) with BatchNorm and ReLU, Sigmoid here as
our images are in [0, 1]; critic: strided Conv2d(4x4) with LeakyReLU, no normalisation),
at 32 px on the built-in data, batch 32, in bf16 autocast (``precision``: "bf16" or "fp32"). No VAE, no
predictor. Every ``steps // 8`` generator steps it prints SWD against the real images and
the shape judge's share, for the trained generator and its weight average (decay
``ema``), and writes the average's 64-sample grid beside this file.
"""

import ast
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.utils import save_image

from vidgen_nb.data.loading import load_dataset
from vidgen_nb.evaluation import real_floor
from vidgen_nb.judge import judge_shapes, load_judge
from vidgen_nb.losses import critic_loss, generator_adversarial_loss
from vidgen_nb.metrics import swd

HERE = Path(__file__).parent


def generator(latent: int, width: int) -> nn.Sequential:
    def up(c_in, c_out):
        return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(nn.Linear(latent, 4 * 4 * 4 * width), nn.Unflatten(1, (4 * width, 4, 4)),
                         nn.BatchNorm2d(4 * width), nn.ReLU(), *up(4 * width, 2 * width),
                         *up(2 * width, width), nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Sigmoid())


def critic(width: int) -> nn.Sequential:
    def down(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*down(3, width), *down(width, 2 * width), *down(2 * width, 4 * width),
                         nn.Flatten(), nn.Linear(4 * 4 * 4 * width, 1))


def main(steps: int, o: dict) -> None:
    seed, width, latent = o.get("seed", 0), o.get("width", 64), o.get("latent", 128)
    lr, n_critic, gp, ema_decay = o.get("lr", 1e-4), o.get("n_critic", 5), o.get("gp", 10.0), o.get("ema", 0.99)
    name = o.get("name", f"dcgan_{seed}")
    torch.manual_seed(seed)
    G, D = generator(latent, width), critic(width)
    G_ema = copy.deepcopy(G).requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.9))
    images = load_dataset(None, image_size=32, in_memory=True, num_workers=0).images.float() / 255
    real = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))]
    judge, fixed_z = load_judge(32), torch.randn(256, latent, generator=torch.Generator().manual_seed(1))
    bf16 = o.get("precision", "bf16") == "bf16"
    g, start, bs = torch.Generator().manual_seed(seed), time.perf_counter(), 32

    def batch():
        return images[torch.randint(0, len(images), (bs,), generator=g)]

    for step in range(1, steps + 1):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(n_critic):
                with torch.no_grad():
                    fake = G(torch.randn(bs, latent))
                loss_d, _ = critic_loss(D, batch(), fake, gp_weight=gp)
                opt_d.zero_grad(set_to_none=True)
                loss_d.float().backward()
                opt_d.step()
            D.requires_grad_(False)
            loss_g = generator_adversarial_loss(D, G(torch.randn(bs, latent)))
            opt_g.zero_grad(set_to_none=True)
            loss_g.float().backward()
            opt_g.step()
            D.requires_grad_(True)
        with torch.no_grad():  # weights averaged, BatchNorm's running statistics copied
            torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1 - ema_decay)
            for a, b in zip(G_ema.buffers(), G.buffers()):
                a.copy_(b)
        if step % (steps // 8) == 0:
            record = {"name": name, "options": o, "step": step, "seconds": round(time.perf_counter() - start)}
            for label, net in (("", G), ("ema_", G_ema)):
                with torch.no_grad():  # BatchNorm on the 256 samples' statistics, as DCGAN samples
                    x = net(fixed_z).float()
                record[label + "swd"] = round(swd(x, real[:256], seed=0), 4)
                record[label + "named"] = round(judge_shapes(judge, x)["shapes_named"], 3)
                record[label + "counts"] = judge_shapes(judge, x)["shape_counts"]
            save_image(x[:64], HERE / f"{name}.png", nrow=8, padding=2, pad_value=1.0)
            print(json.dumps(record), flush=True)
    print(json.dumps({"name": name, "floor": round(real_floor(real), 4),
                      "real_named": judge_shapes(judge, real[:256])["shapes_named"]}), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(int(sys.argv[1]), ast.literal_eval(sys.argv[2]) if len(sys.argv) > 2 else {})
