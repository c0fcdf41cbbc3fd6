"""How fast can the cpu preset's encoder and decoder learn to reconstruct shapes at all?

    python docs/results/shapes_lost/autoencoder.py 2000 '{"widths": (64, 128, 256)}'

A plain autoencoder on the built-in data: the VAE's networks, the posterior mean as
the code, squared error, Adam (betas 0.5, 0.9) at the preset's 2e-3 unless ``lr`` is
given; no KL, no critic, no predictor. Four times in the run it prints the
reconstructions' RMS error, SWD and the share the shape judge names, for the first
256 training images (it has seen them: this measures what the decoder can draw, not
how it generalises).
"""

import ast
import json
import sys
import time

import torch

from vidgen_nb.config import Config
from vidgen_nb.data.loading import load_dataset
from vidgen_nb.judge import judge_shapes, load_judge
from vidgen_nb.metrics import swd
from vidgen_nb.models import VAE


def main(steps: int, options: dict) -> None:
    lr = options.pop("lr", 2e-3)
    config = Config.preset("cpu", **options)
    torch.manual_seed(0)
    vae = VAE(config.model)
    images = load_dataset(None, image_size=config.model.image_size, in_memory=True,
                          num_workers=0).images.float() / 255
    judge, shown = load_judge(config.model.image_size), images[:256]
    opt = torch.optim.Adam(vae.parameters(), lr=lr, betas=(0.5, 0.9))
    g, start = torch.Generator().manual_seed(0), time.perf_counter()
    for step in range(1, steps + 1):
        x = images[torch.randint(0, len(images), (config.batch_size,), generator=g)]
        loss = (vae.decode(vae.encode(x)[0]) - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (steps // 4) == 0:
            with torch.no_grad():
                recon = vae.decode(vae.encode(shown)[0])
            print(json.dumps({"options": str(options), "lr": lr, "step": step,
                              "recon_rms": round((recon - shown).square().mean().sqrt().item(), 3),
                              "recon_swd": round(swd(recon, shown, seed=0), 4),
                              "named": round(judge_shapes(judge, recon)["shapes_named"], 3),
                              "seconds": round(time.perf_counter() - start)}), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(int(sys.argv[1]), ast.literal_eval(sys.argv[2]) if len(sys.argv) > 2 else {})
