"""Command-line options from the config fields themselves: one source for every option.

Every field of ``Config`` (``config.py``) becomes a flag of ``vidgen-train`` and
``vidgen-experiment``: its name is ``--field-name`` (video fields ``--video-field``)
unless the field's metadata names another, its help is the field's ``help``, and its
value is read by the field's type (``32,64,128`` for a tuple). ``--set FIELD=VALUE``
sets any field by its own name. ``given_fields(args)`` returns the fields a command
line set, and nothing else: a field not given keeps the preset's (or the
checkpoint's) value.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing

from .config import SECTIONS, Config

# Fields that may change within a run: a resumed run applies them; any other field
# given on resume must equal the checkpoint's.
RUN_FIELDS = ("steps", "checkpoint_every", "sample_every", "log_every")


@functools.cache
def fields() -> dict[str, tuple[str, dataclasses.Field, type]]:
    """Every config field by name: (section, the field, its type); section "top" for
    ``batch_size`` and ``seed``."""
    found = {}
    for section, kind in (*SECTIONS.items(), ("top", Config)):
        hints = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            if f.name not in SECTIONS:
                found[f.name] = (section, f, hints[f.name])
    return found


def flag(name: str) -> str:
    """The option that sets field ``name``: ``num_frames`` -> ``--frames``, ``noise`` ->
    ``--video-noise``, ``lr`` -> ``--lr``."""
    section, f, _ = fields()[name]
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    return "--" + ("video-" if section == "video" else "") + name.replace("_", "-")


def parse_value(name: str, text: str):
    """The text of an option, as field ``name``'s type; ``ValueError`` naming the field."""
    _, f, kind = fields()[name]
    words = f.metadata.get("words") or {"on": True, "off": False, "true": True, "false": False}
    try:
        if kind is bool:
            key = text.strip().lower()
            if key not in words:
                raise ValueError
            return words[key]
        if typing.get_origin(kind) is tuple:
            args = typing.get_args(kind)
            item = args[0]
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if args[-1] is not Ellipsis and len(parts) != len(args):
                raise ValueError
            return tuple(item(p) for p in parts)
        return kind(text)
    except ValueError:
        expected = {int: "an integer", float: "a number", str: "a string"}.get(kind)
        if kind is bool:
            expected = " or ".join(words)
        elif typing.get_origin(kind) is tuple:
            expected = "comma-separated values, e.g. " + ",".join(map(str, f.default))
        raise ValueError(f"{name}={text!r}: expected {expected}") from None


def add_config_options(parser: argparse.ArgumentParser, *, leave_out: tuple = ()) -> None:
    """A flag for every config field (except ``leave_out``), grouped by section, and ``--set``."""
    titles = {"model": "model (sizes of the VAE, critic and predictor; the delta)",
              "video": "synthetic video (amounts reached at the last frame)",
              "data": "built-in data (when no --data folder is given)",
              "train": "training", "top": "batch and seed"}
    groups = {s: parser.add_argument_group(t) for s, t in titles.items()}
    for name, (section, f, kind) in fields().items():
        if name in leave_out:
            continue
        meta = f.metadata
        common = dict(dest=f"field:{name}", default=None, help=f"{meta['help']} [{name}]")
        if meta.get("switch") is not None:
            groups[section].add_argument(flag(name), action="store_const", const=meta["switch"], **common)
        elif typing.get_args(kind) == (str, Ellipsis):  # several words, as a shell passes them
            groups[section].add_argument(flag(name), nargs="+", metavar="PATTERN", **common)
        elif kind is bool:
            words = tuple(meta.get("words") or ("on", "off"))
            groups[section].add_argument(flag(name), choices=words, metavar="|".join(words), **common)
        elif kind in (int, float, str):
            groups[section].add_argument(flag(name), type=kind, choices=meta.get("choices"),
                                         metavar=None if meta.get("choices") else kind.__name__.upper(),
                                         **common)
        else:  # a tuple, read by given_fields
            groups[section].add_argument(flag(name), metavar="A,B,...", **common)
    parser.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[],
                        help="set any config field by its name, e.g. --set latent_dim=16 "
                             "(python -c 'import vidgen_nb.options as o; print(*o.fields())' lists them)")


def given_fields(args: argparse.Namespace) -> dict:
    """The config fields the command line set, by name, each read as its type.

    Raises ``ValueError`` naming the option for a value that is not of the field's
    type or not among its choices, and for ``--set`` of an unknown field.
    """
    known, given = fields(), {}
    for key, value in vars(args).items():
        if not key.startswith("field:") or value is None:
            continue
        name = key[len("field:"):]
        try:
            if isinstance(value, list):  # --targets
                given[name] = tuple(value)
            elif isinstance(value, str) and (known[name][2] is bool or
                                             typing.get_origin(known[name][2]) is tuple):
                given[name] = parse_value(name, value)
            else:  # typed and checked against its choices by argparse
                given[name] = value
        except ValueError as exc:
            raise ValueError(f"{flag(name)}: {exc}") from None
    for item in args.set:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(known)}")
        try:
            given[name] = parse_value(name, text)
            choices = known[name][1].metadata.get("choices")
            if choices and given[name] not in choices:
                raise ValueError(f"{name}={given[name]!r}: expected one of {choices}")
        except ValueError as exc:
            raise ValueError(f"--set: {exc}") from None
    return given


def option_error(exc: ValueError) -> str:
    """'image_size=100: ...' -> '--image-size: image_size=100: ...' (the field's option)."""
    text = str(exc)
    name = text.split("=")[0].split("[")[0]
    return f"{flag(name)}: {text}" if name in fields() and not text.startswith("--") else text


def flat(config: Config) -> dict:
    """Every field of ``config`` by name, one level."""
    return {name: getattr(config if section == "top" else getattr(config, section), name)
            for name, (section, _, _) in fields().items()}
