"""Image quality without downloaded weights: multi-scale sliced Wasserstein distance.

As used to evaluate progressive GANs (Karras et al., 2018): build a Laplacian pyramid
of each image, take random 7x7 patches at every level, and compare the two sets of
patches with the sliced Wasserstein distance (sorted projections on random
directions). Lower is better; 0 means the patch statistics match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BLUR = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial blur, per channel, reflecting at the borders."""
    C = x.shape[1]
    k = _BLUR.to(x)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(C, 1, 1, 5), groups=C)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(C, 1, 5, 1), groups=C)


def laplacian_pyramid(x: torch.Tensor, min_size: int = 16) -> list[torch.Tensor]:
    """Images (N, C, H, W) -> [band-pass levels, finest first, ..., the coarsest image]."""
    levels = []
    while x.shape[-1] // 2 >= min_size and x.shape[-2] // 2 >= min_size:
        small = _blur(x)[..., ::2, ::2]
        up = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        levels.append(x - up)
        x = small
    return levels + [x]


def _patches(level: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) and top-left corners (N, P) -> descriptors (N*P, C*size*size)."""
    n, c = level.shape[:2]
    offsets = torch.arange(size, device=level.device)
    r = (rows[..., None] + offsets)[..., :, None]  # (N, P, size, 1)
    q = (cols[..., None] + offsets)[..., None, :]  # (N, P, 1, size)
    idx = torch.arange(n, device=level.device)[:, None, None, None]
    patches = level.permute(0, 2, 3, 1)[idx, r, q]  # (N, P, size, size, C)
    return patches.reshape(-1, size * size * c)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, *, projections: int = 256,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance of a, b (N, D)."""
    dirs = torch.randn(a.shape[1], projections, generator=generator).to(a)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return (pa - pb).abs().mean()


def swd(a: torch.Tensor, b: torch.Tensor, **options) -> float:
    """Multi-scale sliced Wasserstein distance between two image sets: the mean over
    pyramid levels of ``swd_levels`` (which takes the same options)."""
    return torch.tensor(swd_levels(a, b, **options)).mean().item()  # float32, as each level


@torch.no_grad()
def swd_levels(a: torch.Tensor, b: torch.Tensor, *, patches_per_image: int = 64, patch_size: int = 7,
               projections: int = 256, min_size: int = 16, seed: int = 0) -> list[float]:
    """Sliced Wasserstein distance between two image sets at each pyramid level.

    Args:
        a, b: images (N, C, H, W) in [0, 1], of the same size; the larger set is cut to
            the smaller one's N.
        patches_per_image: random patches taken per image and pyramid level.
        seed: fixes patch positions and projection directions, so the result is
            deterministic and symmetric in a and b.

    Returns:
        The SWD of the patch descriptors at each level, finest (the sharpest detail)
        first, coarsest (the images shrunk) last; each level's descriptors normalised
        per channel by the statistics of both sets together.
    """
    if a.shape[1:] != b.shape[1:] or a.dim() != 4:
        raise ValueError(f"image sets of shapes {tuple(a.shape)} and {tuple(b.shape)}: "
                         "expected (N, C, H, W) with the same C, H, W")
    n = min(len(a), len(b))
    if n < 1:
        raise ValueError(f"image sets of {len(a)} and {len(b)} images: expected at least one in each")
    a, b = a[:n].float(), b[:n].float()
    for name, images in (("first", a), ("second", b)):
        if not torch.isfinite(images).all():
            raise ValueError(f"the {name} image set holds NaN or infinite values")
    g = torch.Generator().manual_seed(seed)
    distances = []
    for la, lb in zip(laplacian_pyramid(a, min_size), laplacian_pyramid(b, min_size)):
        H, W = la.shape[-2:]
        size = min(patch_size, H, W)
        # The same positions for image i of either set: swapping a and b swaps the sets.
        rows = torch.randint(0, H - size + 1, (n, patches_per_image), generator=g).to(la.device)
        cols = torch.randint(0, W - size + 1, (n, patches_per_image), generator=g).to(la.device)
        da, db = _patches(la, rows, cols, size), _patches(lb, rows, cols, size)
        both = torch.cat([da, db]).view(2 * len(da), size * size, -1)  # (2NP, size*size, C)
        mean, std = both.mean(dim=(0, 1)), both.std(dim=(0, 1)).clamp_min(1e-8)
        da = ((da.view(len(da), -1, mean.numel()) - mean) / std).flatten(1)
        db = ((db.view(len(db), -1, mean.numel()) - mean) / std).flatten(1)
        distances.append(sliced_wasserstein(da, db, projections=projections, generator=g))
    return torch.stack(distances).tolist()
