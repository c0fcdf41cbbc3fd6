"""A learned prior over the VAE's latent codes: per class, a mixture of Gaussians.

The seed's VAE draws samples from the fixed prior N(0, I). Its reconstructions can be
sharp while its samples are not, because the codes the encoder gives real images (the
aggregate posterior) fill another region than N(0, I), and a single Gaussian cannot
hold a discrete factor such as "which of four shapes" without in-between codes that
decode to morphs. ``MixturePrior`` (``prior_components`` K > 0) is trained with the VAE:

    p(z | y) = 1/K sum_k N(z; m_yk, diag(exp(v_yk)))

with learned means m and log-variances v for each class y (one set when unconditional).
Training's KL term becomes the Monte Carlo estimate log q(z | x) - log p(z | y) at the
posterior sample z the reconstruction decodes (the closed form exists for N(0, I) only),
so the codes and the prior are pulled towards each other, and the critic's fakes are
drawn from the prior, so the decoder learns where samples will come from (Tomczak &
Welling, 2018, train a mixture prior the same way; Dilokthanakul et al., 2016, a GMM one).

Noise in, latent codes out (``from_noise``): every sample still starts from one noise
vector eps ~ N(0, I), whose first value also picks the component, by an exact split of
its uniform u = Phi(eps_0) into k = floor(K u) and a fresh uniform K u - k: the same
noise vector always gives the same image, and the components are drawn equally often.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


class MixturePrior(nn.Module):
    """p(z | y): for each of ``classes`` (1 when unconditional), an equal mixture of
    ``components`` diagonal Gaussians over ``latent_dim`` values, all learned.

    The means start as draws from N(0, I) and the variances at 1, so the untrained
    prior spreads about as N(0, 2 I) does.
    """

    def __init__(self, latent_dim: int, classes: int, components: int):
        super().__init__()
        self.components = components
        self.means = nn.Parameter(torch.randn(max(classes, 1), components, latent_dim))
        self.log_var = nn.Parameter(torch.zeros(max(classes, 1), components, latent_dim))

    def _of(self, y: torch.Tensor):
        """Means and log-variances (n, K, D) of each row's class y (n,) (0 when unconditional)."""
        return self.means[y], self.log_var[y]

    def log_prob(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(z | y) per row: z (B, D), y (B,) -> (B,)."""
        m, v = self._of(y)
        per_component = -0.5 * ((z[:, None] - m).square() / v.exp() + v + LOG_2PI).sum(-1)
        return torch.logsumexp(per_component, 1) - math.log(self.components)

    def from_noise(self, eps: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Noise vectors eps (B, D) ~ N(0, I) -> codes (B, D) distributed as p(z | y).

        eps_0's uniform u = Phi(eps_0) picks component k = floor(K u); K u - k, again
        uniform and independent of k, becomes eps_0 again; z = m_yk + exp(v_yk / 2) * eps.
        """
        u = torch.special.ndtr(eps[:, 0].double()) * self.components
        k = u.floor().clamp(max=self.components - 1)
        first = torch.special.ndtri((u - k).clamp(1e-7, 1 - 1e-7)).to(eps.dtype)
        eps = torch.cat([first[:, None], eps[:, 1:]], 1)
        m, v = self._of(y)
        rows = torch.arange(len(eps), device=eps.device)
        k = k.long()
        return m[rows, k] + (0.5 * v[rows, k]).exp() * eps

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x) || p(z | y)) estimated at the posterior sample z = mu + sigma * e:
        log q(z | x) - log p(z | y), averaged over the batch."""
        log_q = -0.5 * ((z - mu).square() / logvar.exp() + logvar + LOG_2PI).sum(1)
        return (log_q - self.log_prob(z, y)).mean()
