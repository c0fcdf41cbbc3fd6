"""Where in its latent space does a trained decoder draw shapes?

    python docs/results/long_cpu/latents.py RUN/checkpoint.pt [RUN2/checkpoint.pt ...]

For the averaged generator (the one samples use), decodes 256 noise vectors from each
of several places and prints one JSON line per place: SWD against 256 real images, the
share the shape judge names, and the median RMS distance from each image to its nearest
training image (what a copy of the training set scores: about the reconstructions').

* samples: the run's fixed noise, z ~ N(0, I), as every figure of the kit;
* reconstructions: posterior means of 256 training images;
* aggregate posterior: a training image's mu + sigma * eps (near-copies by design);
* between codes: a * mu_i + (1 - a) * mu_j of two training images, a in [0.3, 0.7];
* fitted densities: a Gaussian mixture with 1, 8 or 32 diagonal components fitted by EM
  to the 400 posterior means (the ex-post density of Ghosh et al., 2020).
"""

import json
import sys

import torch

from vidgen_nb.evaluation import generate_fixed, reconstruct
from vidgen_nb.judge import judge_shapes
from vidgen_nb.metrics import swd
from vidgen_nb.training import Trainer


def fit_mixture(x: torch.Tensor, k: int, iters: int = 100, seed: int = 0):
    """A diagonal Gaussian mixture fitted to x (N, D) by EM: weights, means, variances."""
    n = len(x)
    mean = x[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]].clone()
    var, weight = x.var(0, keepdim=True).repeat(k, 1), torch.full((k,), 1.0 / k)
    for _ in range(iters):
        log_p = -0.5 * ((x[:, None] - mean) ** 2 / var + var.log()).sum(-1) + weight.log()
        r = log_p.softmax(1)  # (N, k) responsibilities
        nk = r.sum(0) + 1e-6
        weight, mean = nk / n, (r.T @ x) / nk[:, None]
        var = (r.T @ x**2) / nk[:, None] - mean**2 + 1e-3
    return weight, mean, var


def main(paths: list[str]) -> None:
    for path in paths:
        trainer = Trainer.from_checkpoint(path, progress=False)
        n, real = 256, trainer.real_images(400)
        generator, seed = trainer.generator_ema, trainer.config.seed
        trainer._train_mode(False)

        def report(way: str, images: torch.Tensor) -> None:
            judged = judge_shapes(trainer.judge, images)
            nearest = torch.cdist(images.flatten(1).float(), real.flatten(1)).min(1).values
            print(json.dumps({"run": path, "step": trainer.step, "way": way,
                              "swd": round(swd(images.float(), real[:n], seed=0), 4),
                              "named": round(judged["shapes_named"], 3), "counts": judged["shape_counts"],
                              "nearest_rms": round((nearest / images[0].numel() ** 0.5).median().item(), 4)}),
                  flush=True)

        with torch.no_grad():
            report("samples", generate_fixed(generator, trainer.fixed_z[:n], seed=seed)[0])
            report("reconstructions", reconstruct(generator, real[:n], seed=seed))
            mu, logvar = generator.vae.encode(real)
            g = torch.Generator().manual_seed(5)
            i, j = torch.randint(0, len(real), (2, n), generator=g)
            eps = torch.randn(n, mu.shape[1], generator=g)
            report("aggregate posterior", generate_fixed(generator, mu[i] + (0.5 * logvar[i]).exp() * eps, seed=seed)[0])
            a = torch.rand(n, 1, generator=g) * 0.4 + 0.3
            report("between codes", generate_fixed(generator, a * mu[i] + (1 - a) * mu[j], seed=seed)[0])
            for k in (1, 8, 32):
                weight, mean, var = fit_mixture(mu, k)
                c = torch.multinomial(weight, n, replacement=True, generator=g)
                z = mean[c] + var[c].sqrt() * torch.randn(n, mu.shape[1], generator=g)
                report(f"mixture of {k}", generate_fixed(generator, z, seed=seed)[0])


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1:])
