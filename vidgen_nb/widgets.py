"""Interactive explorers for notebooks: ipywidgets controls around matplotlib figures.

Each widget draws into one matplotlib ``Figure`` made once; a control change updates
the artists' data and re-renders the figure to PNG bytes shown by an
``ipywidgets.Image``. Nothing depends on a browser, so tests drive the controls in
code and read the state the widget keeps (``png``, ``renders``, titles).
Display a widget by making it the last expression of a cell (``explorer.ui``).
"""

from __future__ import annotations

import io

import ipywidgets as W
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from .config import VideoConfig
from .generator import Generator
from .models import VAE
from .video import synthetic_video


def _hwc(x: torch.Tensor) -> np.ndarray:
    """Image (C, H, W) in [0, 1] -> array (H, W, C) for imshow."""
    return x.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


MAX_FRAMES = 32  # the frames slider's end: more frames than a strip can show


def _check_image(image) -> None:
    """``TypeError`` / ``ValueError`` unless ``image`` is one image tensor (C, H, W)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image: expected a tensor (C, H, W) in [0, 1], got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3) or min(image.shape) < 1:
        raise ValueError(f"image: expected one image (C, H, W) with C 1 or 3, got shape {tuple(image.shape)}")


def _check_model(model, kinds: tuple, name: str) -> None:
    """``TypeError`` unless ``model`` is one of ``kinds``."""
    if not isinstance(model, kinds):
        raise TypeError(f"{name}: expected a {' or '.join(k.__name__ for k in kinds)} (e.g. "
                        f"trainer.generator_ema), got {type(model).__name__}")


def _class_menu(k: int, classes=None, value: int | None = None):
    """A dropdown of a conditional model's k classes (named by ``classes``, default their
    numbers), starting at ``value`` (default 0); None for an unconditional model (k = 0)."""
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"classes={list(names)!r}: this model has {k} classes"
                         + ("" if k else " (it is unconditional); leave classes out"))
    if not k:
        if value is not None:
            raise ValueError(f"label={value!r}: this model is unconditional; leave label out")
        return None
    value = 0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < k:
        raise ValueError(f"label={value!r}: expected a class in 0..{k - 1}")
    return W.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=value, description="class")


class _Panel:
    """A Figure rendered to PNG into an Image widget; ``draw()`` re-renders it."""

    def __init__(self, figsize, width: str):
        self.fig = Figure(figsize=figsize, dpi=80, layout="constrained")
        FigureCanvasAgg(self.fig)
        self.image = W.Image(format="png", layout=W.Layout(width=width))
        self.renders = 0

    def draw(self) -> None:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        self.image.value = buf.getvalue()
        self.renders += 1

    @property
    def png(self) -> bytes:
        return self.image.value


def _image_axes(fig: Figure, n: int, titles: list[str], shape) -> list:
    """n image axes in a row, each with an AxesImage to update later."""
    axes = fig.subplots(1, n, squeeze=False)[0]
    blank = np.zeros(shape)
    for ax, title in zip(axes, titles):
        ax.imshow(blank, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return list(axes)


class VideoExplorer:
    """The synthetic video of one image: a frame slider with Play, sliders for each change.

    Args:
        image: (C, H, W) in [0, 1].
        num_frames: T to start with; video_cfg: the changes to start with.
    """

    def __init__(self, image: torch.Tensor, num_frames: int = 8, video_cfg: VideoConfig | None = None,
                 *, seed: int = 0):
        _check_image(image)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 2 <= num_frames <= MAX_FRAMES:
            raise ValueError(f"num_frames={num_frames!r}: expected an integer in 2..{MAX_FRAMES} (the "
                             "frames slider's range)")
        cfg = video_cfg or VideoConfig()
        self.source = image.detach()
        style = {"description_width": "80px"}
        self.sliders = {
            "noise": W.FloatSlider(value=cfg.noise, min=0, max=0.3, step=0.01, description="noise", style=style),
            "shift": W.FloatSlider(value=cfg.shift, min=0, max=10, step=0.5, description="shift (px)", style=style),
            "zoom": W.FloatSlider(value=cfg.zoom, min=0, max=0.5, step=0.01, description="zoom", style=style),
            "rotation": W.FloatSlider(value=cfg.rotation, min=0, max=45, step=1, description="rotation (°)", style=style),
            "brightness": W.FloatSlider(value=cfg.brightness, min=0, max=0.5, step=0.01, description="brightness", style=style),
        }
        self.frames = W.IntSlider(value=num_frames, min=2, max=MAX_FRAMES, description="frames", style=style)
        self.seed = W.IntSlider(value=seed, min=0, max=99, description="seed", style=style)
        self.frame = W.IntSlider(value=0, min=0, max=num_frames - 1, description="frame", style=style)
        self.play = W.Play(value=0, min=0, max=num_frames - 1, interval=200, repeat=True)  # loops
        W.link((self.play, "value"), (self.frame, "value"))  # kernel-side: works without a browser

        self.current = _Panel((3, 3.2), "260px")
        (self._frame_ax,) = _image_axes(self.current.fig, 1, ["frame 0"], _hwc(image).shape)
        self.strip = _Panel((8, 1.4), "640px")
        self._strip_axes: list = []
        for control in [*self.sliders.values(), self.frames, self.seed]:
            control.observe(lambda _: self._remake(), names="value")
        self.frame.observe(lambda _: self._show_frame(), names="value")
        self._remake()
        controls = W.VBox([W.HBox([self.play, self.frame]), *self.sliders.values(), self.frames, self.seed])
        self.ui = W.VBox([W.HBox([self.current.image, controls]), self.strip.image])

    def _remake(self) -> None:
        """Make the video again with the sliders' settings and redraw both panels."""
        cfg = VideoConfig(**{k: s.value for k, s in self.sliders.items()})
        T = self.frames.value
        self.video = synthetic_video(self.source[None], T, cfg, seed=self.seed.value)[0]  # (T, C, H, W)
        self.play.max = self.frame.max = T - 1
        self._draw_strip()
        self._show_frame()

    def _draw_strip(self) -> None:
        T = len(self.video)
        if len(self._strip_axes) != T:  # only a change of frame count rebuilds the strip
            self.strip.fig.clear()
            self._strip_axes = _image_axes(self.strip.fig, T, [f"t={k}" for k in range(T)],
                                           _hwc(self.video[0]).shape)
        for ax, frame in zip(self._strip_axes, self.video):
            ax.images[0].set_data(_hwc(frame))
        self.strip.draw()

    def _show_frame(self) -> None:
        k = min(self.frame.value, len(self.video) - 1)
        self._frame_ax.images[0].set_data(_hwc(self.video[k]))
        self._frame_ax.set_title(f"frame {k} of {len(self.video) - 1}", fontsize=9)
        self.current.draw()

    @property
    def title(self) -> str:
        return self._frame_ax.get_title()


class DeltaExplorer:
    """What a predicted weight delta does: base image, patched image, their difference.

    A delta-scale slider (s in theta + s * delta) and a dropdown choosing which target
    parameter's delta to apply (or all); a second panel shows, per parameter, the
    norm of s * delta relative to the weights and the histogram of the chosen delta.

    Args:
        generator: a ``Generator`` with a weight predictor (``trainer.generator_ema``).
        z: the noise vector to decode (1, latent_dim), e.g. ``trainer.fixed_z[:1]`` (its
            code from the prior, ``vae.from_noise``, when the prior is learned).
        seed: seed of the synthetic video the delta is predicted from.
        label: the class drawn first, for a class-conditional generator (default 0); a
            class menu changes it (and predicts the delta of the new image).
        classes: the names of a conditional model's classes for that menu
            (``trainer.class_names``; default: their numbers).
    """

    def __init__(self, generator: Generator, z: torch.Tensor, *, seed: int = 0,
                 scale_range: float = 2.0, label: int | None = None, classes=None):
        _check_model(generator, (Generator,), "generator")
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or len(z) != 1:
            raise ValueError(f"z: expected one noise vector (1, latent_dim), got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
        if generator.predictor is None:
            raise ValueError("this generator has no weight predictor (use_predictor=False)")
        self.generator, self.deltas = generator, generator.deltas
        self._noise, self._seed = z.to(generator.device), seed
        self.label = _class_menu(generator.vae.num_classes, classes, label)
        self.scale = W.FloatSlider(value=1.0, min=-scale_range, max=scale_range, step=0.05,
                                   description="delta scale")
        self.target = W.Dropdown(options=["all", *self.deltas.names], value="all", description="target")
        self.images = _Panel((7.5, 2.8), "600px")
        self.stats = _Panel((7.5, 2.6), "600px")
        self._bar_ax, self._hist_ax = self.stats.fig.subplots(1, 2)
        self._axes = None
        self._predict()
        self.scale.observe(lambda _: self._update(), names="value")
        self.target.observe(lambda _: self._update(), names="value")
        controls = [self.scale, self.target, *([self.label] if self.label else [])]
        self.ui = W.VBox([W.HBox(controls), self.images.image, self.stats.image])

    @torch.no_grad()
    def _predict(self) -> None:
        """The base image of the chosen class and the delta its video gives, then a redraw."""
        label = None if self.label is None else self.label.value
        z = self.generator.vae.from_noise(self._noise, label)
        self.z = self.generator.vae.condition(z, label)  # the decoder's input: z and the class, if any
        self.base = self.generator.vae.decoder(self.z)  # (1, C, H, W)
        _, delta = self.generator.generate(z, label, seed=self._seed, return_delta=True)
        self.delta = delta.float()  # (1, WEIGHT_UPDATE_SIZE)
        if self._axes is None:
            self._axes = _image_axes(self.images.fig, 3, ["base theta", "patched", "|difference| x 4"],
                                     _hwc(self.base[0]).shape)
            if self.label is not None:
                self.label.observe(lambda _: self._predict(), names="value")
        self._axes[0].images[0].set_data(_hwc(self.base[0]))
        self._update()

    def selected_delta(self) -> torch.Tensor:
        """The flat delta with every parameter but the chosen one set to zero."""
        if self.target.value == "all":
            return self.delta
        keep = torch.zeros_like(self.delta)
        part = self.deltas.slices[self.target.value]
        keep[:, part] = self.delta[:, part]
        return keep

    @torch.no_grad()
    def _update(self) -> None:
        s = self.scale.value
        self.patched = self.deltas.decode(self.z, self.selected_delta(), scale=s)
        diff = (self.patched - self.base).abs() * 4
        self._axes[1].images[0].set_data(_hwc(self.patched[0]))
        self._axes[1].set_title(f"patched, s = {s:+.2f}", fontsize=9)
        self._axes[2].images[0].set_data(_hwc(diff[0]))
        self.images.draw()

        params = dict(self.generator.vae.named_parameters())
        parts = self.deltas.split(self.delta)
        names = self.deltas.names
        ratios = [abs(s) * parts[n].norm().item() / max(params[n].norm().item(), 1e-12) for n in names]
        self._bar_ax.clear()
        self._bar_ax.barh([n.removeprefix("decoder.") for n in names], ratios, color="tab:orange")
        self._bar_ax.set_title("||s delta|| / ||theta||", fontsize=9)
        self._bar_ax.tick_params(labelsize=8)
        self._hist_ax.clear()
        chosen = self.delta if self.target.value == "all" else self.delta[:, self.deltas.slices[self.target.value]]
        self._hist_ax.hist((s * chosen).flatten().cpu().numpy(), bins=40, color="tab:blue")
        self._hist_ax.set_title(f"s delta values ({self.target.value})", fontsize=9)
        self._hist_ax.tick_params(labelsize=8)
        self.stats.draw()


class LatentExplorer:
    """Sliders on the leading latent dimensions of z and a seed for the rest; for a
    class-conditional model, a class to draw as well.

    ``model``: a ``Generator`` (the image is ``generate(z, y)``, theta + the delta the
    predictor gives it, as samples are made) or a ``VAE`` (its base decode, theta alone).
    ``classes``: the names of a conditional model's classes (``trainer.class_names``;
    default: their numbers).
    """

    def __init__(self, model, *, dims: int = 6, seed: int = 0, classes=None):
        _check_model(model, (Generator, VAE), "model")
        self.model = model
        self.vae = model.vae if isinstance(model, Generator) else model
        self.label = _class_menu(self.vae.num_classes, classes)
        self.seed = W.IntSlider(value=seed, min=0, max=999, description="seed")
        n = min(dims, self.vae.latent_dim)
        self.dims = [W.FloatSlider(value=0.0, min=-3, max=3, step=0.1, description=f"z[{i}]")
                     for i in range(n)]
        self.panel, self._quiet = _Panel((3, 3.2), "260px"), False
        title = "generate(z): theta + delta" if self.model is not self.vae else "decode(z): theta"
        with torch.no_grad():
            shape = _hwc(self.vae.decode(self.vae.sample_z(1))[0]).shape
        (self._ax,) = _image_axes(self.panel.fig, 1, [title], shape)
        self.seed.observe(lambda _: self._reseed(), names="value")
        for slider in [*self.dims, *([self.label] if self.label else [])]:
            slider.observe(lambda _: self._update(), names="value")
        self._reseed()
        controls = [*([self.label] if self.label else []), self.seed, *self.dims]
        self.ui = W.HBox([self.panel.image, W.VBox(controls)])

    def _reseed(self) -> None:
        """New random values for every dimension; the sliders take the leading ones."""
        g = torch.Generator().manual_seed(self.seed.value)
        self.z = torch.randn(1, self.vae.latent_dim, generator=g)
        self._quiet = True  # one redraw for the lot, not one per slider
        for i, slider in enumerate(self.dims):
            slider.value = round(float(self.z[0, i].clamp(-3, 3)), 1)
        self._quiet = False
        self._update()

    @torch.no_grad()
    def _update(self) -> None:
        if self._quiet:
            return
        for i, slider in enumerate(self.dims):
            self.z[0, i] = slider.value
        y = None if self.label is None else self.label.value  # one class for the image
        z = self.vae.from_noise(self.z.to(next(self.vae.parameters()).device), y)
        x = self.vae.decode(z, y) if self.model is self.vae else self.model.generate(z, y, seed=0)
        self.image = x[0].float().cpu()
        self._ax.images[0].set_data(_hwc(self.image))
        self.panel.draw()


class TrainingDashboard:
    """Live loss curves and the latest samples while a training cell runs.

    Use as the trainer's callback: ``Trainer(config, callback=dashboard.update)`` or
    ``trainer.callback = dashboard.update``; display ``dashboard.ui`` before training.
    """

    KEYS = ("critic", "generator", "recon", "kl")

    def __init__(self, *, samples: int = 16):
        self.samples = samples
        self.curves = _Panel((7, 2.4), "560px")
        axes = self.curves.fig.subplots(1, len(self.KEYS))
        self.lines = {}
        for ax, key in zip(axes, self.KEYS):
            (self.lines[key],) = ax.plot([], [], lw=1)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        self.grid = _Panel((3, 3), "240px")
        self._grid_ax = self.grid.fig.subplots()
        self._grid_ax.set_axis_off()
        self.status = W.Label("waiting for the first step")
        self.ui = W.VBox([self.status, W.HBox([self.curves.image, self.grid.image])])

    def update(self, trainer, record: dict) -> None:
        """Trainer callback: append the new points, redraw curves and samples."""
        history = [r for r in trainer.history if "critic" in r]
        steps = [r["step"] for r in history]
        for key, line in self.lines.items():
            line.set_data(steps, [r[key] for r in history])
            line.axes.relim()
            line.axes.autoscale_view()
        self.curves.draw()
        grid = make_grid(trainer.samples(self.samples), nrow=4, padding=1, pad_value=1)
        if self._grid_ax.images:
            self._grid_ax.images[0].set_data(_hwc(grid))
        else:
            self._grid_ax.imshow(_hwc(grid), interpolation="nearest")
        self._grid_ax.set_title(f"samples, step {trainer.step}", fontsize=9)
        self.grid.draw()
        self.status.value = (f"step {trainer.step}: critic {record['critic']:.3g}, "
                             f"generator {record['generator']:.3g}, {record['images_per_s']:.0f} images/s")

    @property
    def points(self) -> int:
        """How many points each curve holds."""
        return len(self.lines["critic"].get_xdata())
