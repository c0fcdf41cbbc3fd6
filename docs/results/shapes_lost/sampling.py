"""Where are the shapes lost? Judge one trained run's images, decoded several ways.

    python docs/results/shapes_lost/sampling.py runs/main/checkpoint.pt

For the averaged generator (the one samples use) and the trained one: the samples of
the run's fixed noise, the reconstructions of 256 real images (posterior means), the
same noise shrunk towards 0 (the truncation trick of BigGAN), and noise drawn from
what the encoder makes of the 400 training images instead of from N(0, I): the
aggregate posterior itself (a training image's mu + sigma * eps) and one Gaussian
with the mean and covariance of the posterior means. Prints one JSON line per way:
SWD against the 256 real images and the share the shape judge names.
"""

import json
import sys

import torch

from vidgen_nb.evaluation import generate_fixed, reconstruct
from vidgen_nb.judge import judge_shapes
from vidgen_nb.metrics import swd
from vidgen_nb.training import Trainer


def main(path: str) -> None:
    trainer = Trainer.from_checkpoint(path, progress=False)
    n, real = 256, trainer.real_images(400)
    seed = trainer.config.seed
    z = trainer.fixed_z[:n]

    def report(weights: str, way: str, images: torch.Tensor) -> None:
        judged = judge_shapes(trainer.judge, images)
        print(json.dumps({"run": path, "step": trainer.step, "weights": weights, "way": way,
                          "swd": round(swd(images.float().cpu(), real[:n], seed=0), 4),
                          "named": round(judged["shapes_named"], 3), "counts": judged["shape_counts"]}),
              flush=True)

    report("-", "real images (the other 144)", real[n:])
    trainer._train_mode(False)
    with torch.no_grad():
        for weights, generator in (("averaged", trainer.generator_ema), ("trained", trainer.generator)):
            report(weights, "samples", generate_fixed(generator, z, seed=seed)[0])
            report(weights, "reconstructions", reconstruct(generator, real[:n], seed=seed))
            for t in (0.75, 0.5):
                report(weights, f"samples of z * {t}", generate_fixed(generator, z * t, seed=seed)[0])
            mu, logvar = generator.vae.encode(real)
            g = torch.Generator().manual_seed(5)
            pick = torch.randint(0, len(real), (n,), generator=g)
            eps = torch.randn(n, mu.shape[1], generator=g)
            aggregate = mu[pick] + (0.5 * logvar[pick]).exp() * eps
            report(weights, "aggregate posterior", generate_fixed(generator, aggregate, seed=seed)[0])
            cov = torch.cov(mu.T) + 1e-4 * torch.eye(mu.shape[1])
            fitted = mu.mean(0) + torch.randn(n, mu.shape[1], generator=g) @ torch.linalg.cholesky(cov).T
            report(weights, "Gaussian fitted to the means", generate_fixed(generator, fitted, seed=seed)[0])


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1])
