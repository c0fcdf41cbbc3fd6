"""Does training the VAE alone first (cheap steps) leave more of the budget for shapes?

    python docs/results/shapes_lost/warmup.py 3000 600 0

K steps of the VAE alone (its loss of the cpu preset, on reconstructions by the base
weights; no critic, no predictor: about a ninth of a full step's cost), then N full
steps of the cpu preset with seed S, then ``Trainer.evaluate``. Prints the judge's
share of the reconstructions after the K steps, then one JSON line of figures, and
writes the sample grid beside this script as warmup_K_N_S.png.
"""

import json
import sys
import time
from pathlib import Path

import torch

from vidgen_nb.config import Config
from vidgen_nb.judge import judge_shapes
from vidgen_nb.losses import vae_loss
from vidgen_nb.training import Trainer


def main(warm: int, steps: int, seed: int) -> None:
    trainer = Trainer(Config.preset("cpu", seed=seed), progress=False)
    t = trainer.config.train
    start = time.perf_counter()
    trainer._train_mode(True)
    for _ in range(warm):
        real = trainer._real()
        x_hat, mu, logvar = trainer.vae(real)
        loss, _ = vae_loss(x_hat, real, mu, logvar, beta=t.beta, sigma=t.recon_sigma)
        trainer.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        trainer.opt_g.step()
        trainer._update_ema()
    warm_s = time.perf_counter() - start
    _, recon = trainer.reconstructions(256)
    print(f"after {warm} steps of the VAE alone ({warm_s:.0f} s): the judge names "
          f"{judge_shapes(trainer.judge, recon)['shapes_named']:.1%} of the reconstructions",
          flush=True)
    trainer.train(steps)
    figures = trainer.evaluate()
    print(json.dumps({"warm": warm, "steps": steps, "seed": seed, "warm_s": round(warm_s),
                      "train_s": round(time.perf_counter() - start - warm_s), **figures}), flush=True)
    trainer.save_samples(Path(__file__).parent / f"warmup_{warm}_{steps}_{seed}.png")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(*map(int, sys.argv[1:4]))
