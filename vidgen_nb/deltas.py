"""Weight deltas: which VAE weights the predictor adjusts, and decoding with them.

The predictor outputs one flat vector per image, of width ``WEIGHT_UPDATE_SIZE`` (the
seed's name; ``weight_update_size`` here). ``WeightDeltas`` cuts it into one tensor per
selected parameter and decodes with the patched parameters ``theta + s * delta``
without ever writing the module's own parameters, so gradients reach both the
predictor (through delta) and the base weights theta. What the prediction means is
the parametrisation:

* ``dense``: one number per weight, added: delta = prediction;
* ``channel``: one number per (input, output) channel pair of a weight, shared by the
  taps of its kernel and multiplying it: delta = theta * prediction, that is
  theta * (1 + prediction) once added (HyperStyle's choice; 16x fewer numbers for 4x4
  kernels);
* ``lora``: a low-rank product per weight, delta = A (B0 + B) with A (rows, r) and
  B (r, columns) predicted, the weight seen as a matrix of its first dimension by the
  rest (LoRA, Hu et al. 2021; HyperInverter's per-image factors). B0 is a fixed random
  matrix: a zero prediction is then a zero delta (the predictor starts at zero) whose
  gradient still reaches A, where A B alone would start at a saddle with none.
  Biases stay additive, one number per channel, in every parametrisation.

Decoding:

* one delta for the batch (``batch_mean``): ``torch.func.functional_call`` with the
  patched parameters;
* a delta per image (``per_sample``): forward hooks add each image's delta term to the
  target layers' outputs (exact, since those layers are linear in their weights).
"""

from __future__ import annotations

import fnmatch
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .config import DEFAULT_DELTA_TARGETS, DELTA_MODES, DELTA_PARAMS, check_one_of, check_positive

# Layers whose output is linear in their weights and add their bias: the per-sample
# path below relies on that.
LINEAR_IN_WEIGHTS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class WeightDeltas:
    """A selection of VAE parameters the weight predictor adjusts.

    Args:
        vae: the VAE whose parameters are selected.
        targets: parameter names or glob patterns, e.g. ``("decoder.out.*",)``; see
            ``vae.named_parameters()`` for the names.
        mode: ``"per_sample"`` (each image its own delta) or ``"batch_mean"`` (one
            delta, the mean over the batch, for every image).
        param: the parametrisation, ``"dense"``, ``"channel"`` or ``"lora"`` (see above).
        rank: r of the ``lora`` factors (at most the weight matrix's smaller side).

    Attributes:
        names: the selected parameter names, in the model's order.
        shapes: name -> shape of its part of the prediction (the parameter's own for
            dense, its first two dimensions for channel-wise weights, r x (rows +
            columns) for low-rank ones: A and B flattened side by side).
        slices: name -> slice of the flat prediction that belongs to it.
        weight_update_size: total number of selected weights = the predictor's width
            (also as ``WEIGHT_UPDATE_SIZE``, the seed's name).
    """

    def __init__(self, vae: nn.Module, targets=DEFAULT_DELTA_TARGETS, mode: str = "per_sample",
                 param: str = "dense", rank: int = 4):
        if isinstance(targets, str):
            targets = (targets,)
        check_one_of("delta_mode", mode, DELTA_MODES)
        check_one_of("delta_param", param, DELTA_PARAMS)
        check_positive("delta_rank", rank)
        params = dict(vae.named_parameters())
        unmatched = [t for t in targets if not fnmatch.filter(params, t)]
        if unmatched or not targets:
            raise ValueError(
                f"delta_targets={tuple(targets)!r}: {unmatched or list(targets)} match no VAE "
                f"parameter; available: {', '.join(params)}")
        self.vae, self.mode, self.param, self.rank = vae, mode, param, rank
        self.names = [n for n in params if any(fnmatch.fnmatchcase(n, t) for t in targets)]
        if not all(n.startswith("decoder.") for n in self.names):
            outside = [n for n in self.names if not n.startswith("decoder.")]
            raise ValueError(f"delta_targets={tuple(targets)!r}: must be decoder parameters (they change how z "
                             f"is decoded); not: {', '.join(outside)}")
        modules = dict(vae.named_modules())
        for n in self.names:
            owner, _, kind = n.rpartition(".")
            module = modules[owner]
            if (not isinstance(module, LINEAR_IN_WEIGHTS) or kind not in ("weight", "bias")
                    or getattr(module, "padding_mode", "zeros") != "zeros"):
                raise ValueError(f"delta_targets={tuple(targets)!r}: {n} is not the weight or bias of a "
                                 f"{' / '.join(c.__name__ for c in LINEAR_IN_WEIGHTS)} layer (zero padding)")
        self.param_shapes = {n: tuple(params[n].shape) for n in self.names}
        if param == "lora":
            for n in self.names:
                if n.endswith(".weight") and rank > min(self._matrix(n)):
                    raise ValueError(f"delta_rank={rank}: {n} is a {'x'.join(map(str, self._matrix(n)))} "
                                     f"matrix, so its rank is at most {min(self._matrix(n))}")
            # B0: fixed and the same in every run (one generator seeded 0, drawn in the
            # order of the names), N(0, 1/r) so that A B0 has the size of A's entries
            # whatever the rank.
            g = torch.Generator().manual_seed(0)
            self.lora_b0 = {n: torch.randn(rank, self._matrix(n)[1], generator=g) / rank**0.5
                            for n in self.names if n.endswith(".weight")}
        self.shapes = {n: self._predicted_shape(n) for n in self.names}
        self.slices, start = {}, 0
        for n in self.names:
            size = math.prod(self.shapes[n])
            self.slices[n] = slice(start, start + size)
            start += size
        self.weight_update_size = start
        # Only ``decoder.out`` is patched: every layer before it computes the same
        # features with or without deltas, so they can be computed once (``features=``).
        self.output_layer_only = all(n.startswith("decoder.out.") for n in self.names)

    def _multiplies(self, name: str) -> bool:
        """Whether the prediction for ``name`` scales theta (channel-wise weights)."""
        return self.param == "channel" and name.endswith(".weight")

    def _low_rank(self, name: str) -> bool:
        """Whether the prediction for ``name`` is a pair of factors A, B (lora weights)."""
        return self.param == "lora" and name.endswith(".weight")

    def _matrix(self, name: str) -> tuple[int, int]:
        """A weight seen as a matrix: its first dimension by all the others."""
        shape = self.param_shapes[name]
        return shape[0], math.prod(shape[1:])

    def _predicted_shape(self, name: str) -> tuple[int, ...]:
        shape = self.param_shapes[name]
        if self._low_rank(name):
            return (self.rank, sum(self._matrix(name)))
        return shape[:2] if self._multiplies(name) else shape

    @property
    def WEIGHT_UPDATE_SIZE(self) -> int:  # noqa: N802 -- the seed's name, kept as an alias
        """``weight_update_size``, by the name the seed's README gives it."""
        return self.weight_update_size

    def describe(self) -> str:
        """One line per selected parameter: name, shape and size, then the total."""
        lines = [f"{n:<24} {'x'.join(map(str, self.shapes[n])):>12} = {self.slices[n].stop - self.slices[n].start}"
                 + ("  (x theta)" if self._multiplies(n) else "")
                 + (f"  (A B, rank {self.rank})" if self._low_rank(n) else "")
                 for n in self.names]
        return "\n".join(lines + [f"WEIGHT_UPDATE_SIZE = {self.weight_update_size}"])

    def split(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat prediction (B, WEIGHT_UPDATE_SIZE) -> the deltas {name: (B, *param.shape)}.

        These are what ``theta + s * delta`` adds, whatever the parametrisation.
        """
        if delta.dim() != 2 or delta.shape[1] != self.weight_update_size:
            parts = " + ".join(f"{n} {'x'.join(map(str, self.shapes[n]))}" for n in self.names)
            raise ValueError(
                f"delta of shape {tuple(delta.shape)}: expected (B, {self.weight_update_size}), "
                f"WEIGHT_UPDATE_SIZE = {parts}")
        parts = {n: delta[:, s].view(-1, *self.shapes[n]) for n, s in self.slices.items()}
        if self.param == "dense":
            return parts
        params = dict(self.vae.named_parameters())
        for n, d in parts.items():
            if self._multiplies(n):  # theta * prediction, the prediction shared by a kernel's taps
                extra = len(self.param_shapes[n]) - 2
                parts[n] = params[n] * d.view(*d.shape, *([1] * extra))
            elif self._low_rank(n):  # A (B0 + B): (B, rows, r) @ (B, r, columns)
                rows, _ = self._matrix(n)
                a = d[:, :, :rows].transpose(1, 2)
                b = d[:, :, rows:] + self.lora_b0[n].to(d)
                parts[n] = (a @ b).view(-1, *self.param_shapes[n])
        return parts

    def squared_size(self, delta: torch.Tensor) -> torch.Tensor:
        """Flat prediction (B, WEIGHT_UPDATE_SIZE) -> (B,) ||delta_i||^2 / ||theta||^2 over
        all selected weights: the squared size of each image's weight change relative to
        the weights it changes, whatever the parametrisation (theta is a constant here)."""
        params = dict(self.vae.named_parameters())
        theta = sum(params[n].detach().float().square().sum() for n in self.names)
        change = sum(d.float().flatten(1).square().sum(1) for d in self.split(delta).values())
        return change / theta.clamp_min(1e-12)

    def patched(self, delta: dict[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
        """Decoder parameters theta + scale * delta, for one delta per parameter.

        Keys are relative to the decoder (``out.weight``), as ``functional_call`` wants.
        """
        base = dict(self.vae.decoder.named_parameters())
        return {n[len("decoder."):]: base[n[len("decoder."):]] + scale * d for n, d in delta.items()}

    def decode(self, z: torch.Tensor | None, delta: torch.Tensor, *, scale: float = 1.0,
               mode: str | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        """Decode noise vectors with patched weights.

        Args:
            z: noise vectors (B, latent_dim).
            delta: flat predictions (B, WEIGHT_UPDATE_SIZE).
            scale: s in theta + s * delta (1 in training; 0 gives the base images).
            mode: overrides the selection's mode for this call.
            features: ``vae.decoder.features(z)``, already computed, to decode from
                instead of z; only when ``output_layer_only``.

        Returns:
            images (B, C, H, W) in [0, 1].
        """
        mode = mode or self.mode
        check_one_of("delta_mode", mode, DELTA_MODES)
        if features is not None and not self.output_layer_only:
            raise ValueError(f"features given, but the targets {self.names} reach beyond decoder.out")
        x, kwargs = (z, {}) if features is None else (features, {"from_features": True})
        if delta.shape[0] != x.shape[0]:
            raise ValueError(f"delta has {delta.shape[0]} rows but z has {x.shape[0]}: "
                             "expected one delta per noise vector")
        parts = self.split(delta)
        if mode == "batch_mean":
            mean = {n: d.mean(0) for n, d in parts.items()}
            return functional_call(self.vae.decoder, self.patched(mean, scale), (x,), kwargs)
        # Per sample. Every target layer is linear in its weights, so
        #   layer(x_i; W + s*dW_i, b + s*db_i) = layer(x_i; W, b) + s*(layer(x_i; dW_i) + db_i):
        # the shared weights run batched as usual, and only the delta term runs per
        # sample. A zero delta adds exact zeros, giving exactly the base images (on CUDA,
        # up to cuDNN's own run-to-run differences of about 1e-7 in the base decode,
        # which torch.backends.cudnn.deterministic = True removes).
        hooks = []
        try:
            for module_name, module in self.vae.decoder.named_modules():
                weight = parts.get(f"decoder.{module_name}.weight")
                bias = parts.get(f"decoder.{module_name}.bias")
                if weight is not None or bias is not None:
                    hooks.append(module.register_forward_hook(
                        _add_delta_term(weight, bias, scale)))
            return self.vae.decoder(x, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()


def _conv_without_bias(module: nn.Module, x_i: torch.Tensor, w_i: torch.Tensor) -> torch.Tensor:
    """The convolution ``module`` computes, for one sample x_i (C, H, W) and weight w_i."""
    m = module
    # Under CPU bf16 autocast x_i is bf16 while a channel delta (theta * delta_c, in
    # float32) is not, and the convolution inside vmap refuses the mix.
    w_i = w_i.to(x_i.dtype)
    if isinstance(m, nn.ConvTranspose2d):
        y = F.conv_transpose2d(x_i[None], w_i, None, m.stride, m.padding, m.output_padding,
                               m.groups, m.dilation)
    else:
        y = F.conv2d(x_i[None], w_i, None, m.stride, m.padding, m.dilation, m.groups)
    return y[0]


def _add_delta_term(d_weight, d_bias, scale):
    """Forward hook adding scale * (layer(x_i; d_weight_i) + d_bias_i) to each sample's output."""

    def hook(module, args, output):
        x, term = args[0], 0
        if d_weight is not None:
            if isinstance(module, nn.Linear):
                term = torch.einsum("bi,boi->bo", x, d_weight)  # (B, in) x (B, out, in)
            else:
                term = vmap(partial(_conv_without_bias, module))(x, d_weight)
        if d_bias is not None:
            term = term + d_bias.view(*d_bias.shape, *([1] * (output.dim() - 2)))
        return output + scale * term

    return hook
