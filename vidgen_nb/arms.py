"""What a study compares: arms, as data.

An *arm* is a variant of the model: a name, what it asks, and the config fields it
changes. The named arms of ``ARMS`` ask whether the weight predictor helps; any other
arm is given as ``NAME:FIELD=VALUE,...`` (``parse_arm``) or in a spec file
(``load_spec``, JSON). ``study.py`` trains them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .data.loading import classes_for
from .options import fields, parse_value

STILL = {"noise": 0.0, "shift": 0.0, "zoom": 0.0, "rotation": 0.0, "brightness": 0.0}


@dataclass(frozen=True)
class Arm:
    """One variant of the model: what it tests, the config fields it changes, and
    (if not every seed of the study) the seeds it runs with."""

    question: str
    overrides: dict = field(default_factory=dict)
    seeds: tuple | None = None


ARMS = {
    "full": Arm("the kit's model: the 3D CNN watches each image's video", {}),
    "no-predictor": Arm("the plain VAE-WGAN-GP: does any delta help?", {"use_predictor": False}),
    "constant-delta": Arm("one learned delta for all images: is it the per-image prediction, "
                          "or just extra weights?", {"delta_source": "constant"}),
    "batch-mean": Arm("one delta per batch, the mean of the predictions", {"delta_mode": "batch_mean"}),
    "still-video": Arm("the predictor sees T copies of the image: does the motion matter?", STILL),
    "channel": Arm("per-channel deltas scaling theta instead of dense ones", {"delta_param": "channel"}),
    "lora": Arm("low-rank deltas A B (rank 4) instead of dense ones", {"delta_param": "lora"}),
    "code-delta": Arm("a delta from the code and class alone, by a small MLP (self-modulation): "
                      "does the video add anything the code does not carry?", {"delta_source": "code"}),
    "critic-video": Arm("the video also moves the image along the critic's gradient: does an "
                        "error signal give the predictor something to see?", {"critic_step": 0.02}),
    "update": Arm("the critic-guided video, and each delta's size penalised (||delta||^2 / "
                  "||theta||^2, weight 1): theta must draw alone, delta is a per-image correction",
                  {"critic_step": 0.02, "delta_penalty": 1.0}),
}
SETTINGS = ("preset", "steps", "swd_every", "data", "precision", "set")  # what makes runs comparable
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # an arm's name is a folder's name


def check_overrides(where: str, overrides: dict) -> dict:
    """``overrides`` with every name a config field; ``ValueError`` naming ``where``."""
    unknown = [k for k in overrides if k not in fields()]
    if unknown:
        raise ValueError(f"{where}: unknown config field(s) {unknown}; known: {', '.join(fields())}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def parse_arm(text: str) -> tuple[str, Arm]:
    """``"full"`` (a named arm) or ``"wide:widths=64,128,256,lr=1e-3"`` -> (name, Arm).

    Values are read as their field's type; a value's own commas stay with it (a piece
    without ``=`` continues the value before it). ``ValueError`` names the arm.
    """
    name, sep, rest = text.strip().partition(":")
    if not NAME.fullmatch(name):
        raise ValueError(f"arms [{text!r}]: an arm's name is letters, digits, '_', '.', '+' or '-'")
    if not sep:
        if name not in ARMS:
            raise ValueError(f"arms [{name!r}]: expected names among {', '.join(ARMS)}, or "
                             "NAME:FIELD=VALUE,... for an arm of your own")
        return name, ARMS[name]
    pieces: list[str] = []
    for piece in rest.split(","):
        if "=" in piece or not pieces:
            pieces.append(piece)
        else:
            pieces[-1] += "," + piece
    overrides = {}
    for piece in filter(str.strip, pieces):
        key, eq, value = piece.partition("=")
        if not eq or key.strip() not in fields():
            raise ValueError(f"arm {name}: {piece!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(fields())}")
        try:
            overrides[key.strip()] = parse_value(key.strip(), value)
        except ValueError as exc:
            raise ValueError(f"arm {name}: {exc}") from None
    return name, Arm(", ".join(f"{k}={v}" for k, v in overrides.items()) or "as the preset", overrides)


def resolve_arms(arms) -> dict[str, Arm]:
    """Arm names, ``NAME:FIELD=VALUE`` texts, or a dict name -> Arm, as a dict of Arms."""
    if isinstance(arms, dict):
        found = {}
        for name, arm in arms.items():
            if not NAME.fullmatch(str(name)):
                raise ValueError(f"arms [{name!r}]: an arm's name is letters, digits, '_', '.', '+' or '-'")
            found[name] = arm if isinstance(arm, Arm) else Arm("", check_overrides(f"arm {name}", arm))
    else:
        found = dict(parse_arm(a) for a in arms)
    if not found:
        raise ValueError("arms []: expected at least one arm")
    return found


def load_spec(path: str | os.PathLike) -> dict:
    """A study spec (JSON) as keyword arguments of ``Study``: preset, steps, swd_every,
    seeds, data, precision, baseline, ``set`` (fields every arm changes) and ``arms``: name ->
    either {FIELD: VALUE, ...} or {"set": {...}, "seeds": [...], "question": "..."}.
    ``ValueError`` naming the file and the entry."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"spec {path}: cannot be read as JSON ({exc})") from None
    known = {"question", "preset", "steps", "swd_every", "seeds", "data", "precision", "set", "arms",
             "baseline", "answer", "notes"}
    if not isinstance(spec, dict) or set(spec) - known or not isinstance(spec.get("arms"), dict):
        raise ValueError(f"spec {path}: expected a JSON object with 'arms' (name -> fields) and "
                         f"any of {sorted(known - {'arms'})}")
    arms = {}
    for name, entry in spec["arms"].items():
        entry = entry or {}
        if "set" in entry:
            seeds = entry.get("seeds")
            arms[name] = Arm(entry.get("question", ""), check_overrides(f"spec {path}, arm {name}",
                             entry["set"]), tuple(seeds) if seeds else None)
        else:
            arms[name] = Arm("", check_overrides(f"spec {path}, arm {name}", entry))
    kwargs = {k: spec[k] for k in ("preset", "steps", "swd_every", "seeds", "data", "precision", "baseline")
              if k in spec}
    return {**kwargs, "overrides": check_overrides(f"spec {path}, set", spec.get("set", {})), "arms": arms}


def arm_config(preset: str, arm: str | Arm, seed: int, steps: int | None = None,
               overrides: dict | None = None, data=None) -> Config:
    """The preset with the study's ``overrides``, the arm's changes, this seed and
    (if given) this many steps; a conditional model gets as many classes as the folder
    ``data`` has, unless the study or the arm sets ``num_classes``."""
    arm = ARMS[arm] if isinstance(arm, str) else arm
    changes = {**(overrides or {}), **arm.overrides, "seed": seed}
    if steps is not None:
        changes["steps"] = steps
    return classes_for(Config.preset(preset, **changes), data, given=changes)
