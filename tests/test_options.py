"""Every config field is a command-line option, and none is ignored on --resume."""

import typing

import pytest

from vidgen_nb import builtin_dataset
from vidgen_nb.config import Config
from vidgen_nb.options import RUN_FIELDS, fields, flag, flat, given_fields
from vidgen_nb.train import build_parser, check_resume_options, main
from vidgen_nb.trainer import Trainer


def other_value(name: str, value):
    """A value of field ``name`` other than ``value`` (not necessarily a valid config)."""
    _, f, kind = fields()[name]
    choices = f.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != value)
    if kind is bool:
        return not value
    if kind is int:
        return value + 1
    if kind is float:
        return value + 0.25
    if kind is str:
        return "color" if value != "color" else ""
    if typing.get_args(kind)[-1] is Ellipsis:
        return (*value, value[-1])
    return (value[0], 0.95 if value[1] != 0.95 else 0.5)


def argv_for(name: str, value) -> list[str]:
    """The command line that sets field ``name`` to ``value`` through its own flag."""
    meta, kind = fields()[name][1].metadata, fields()[name][2]
    if meta.get("switch") is not None:
        assert value == meta["switch"], name
        return [flag(name)]
    if kind is bool:
        words = {v: k for k, v in (meta.get("words") or {"on": True, "off": False}).items()}
        return [flag(name), words[value]]
    if name == "delta_targets":
        return [flag(name), *value]
    if isinstance(value, tuple):
        return [flag(name), ",".join(map(str, value))]
    return [flag(name), str(value)]


def test_every_field_has_a_flag_with_help_and_reads_back_through_flag_and_set():
    cpu = flat(Config.preset("cpu"))
    assert len(cpu) == len(fields()) and len({flag(n) for n in fields()}) == len(fields())
    for name, (_, f, _) in fields().items():
        assert f.metadata["help"], name
        value = other_value(name, cpu[name])
        args = build_parser().parse_args(argv_for(name, value))
        assert given_fields(args) == {name: value}, name
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        if not isinstance(value, bool):
            assert given_fields(build_parser().parse_args(["--set", f"{name}={text}"])) == {name: value}
        assert given_fields(build_parser().parse_args([])) == {}


def test_set_refuses_an_unknown_field_and_a_bad_value_by_name():
    with pytest.raises(ValueError, match="--set 'latent=3'.*latent_dim"):
        given_fields(build_parser().parse_args(["--set", "latent=3"]))
    with pytest.raises(ValueError, match="--set: widths='a,b': expected comma-separated"):
        given_fields(build_parser().parse_args(["--set", "widths=a,b"]))
    with pytest.raises(ValueError, match="--set: delta_mode='mean': expected one of"):
        given_fields(build_parser().parse_args(["--set", "delta_mode=mean"]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("resume") / "run"
    Trainer(Config.preset("tiny"), data=data, out=out, progress=False).train(1)
    return out / "checkpoint.pt"


def test_on_resume_every_option_is_applied_or_refused_never_ignored(checkpoint):
    stored = Config.preset("tiny")
    for name in fields():
        value = other_value(name, flat(stored)[name])
        args = build_parser().parse_args(["--resume", str(checkpoint), *argv_for(name, value)])
        given = given_fields(args)
        if name in RUN_FIELDS:
            assert check_resume_options(args, given, stored, checkpoint) == {name: value}
        else:
            with pytest.raises(ValueError) as refused:
                check_resume_options(args, given, stored, checkpoint)
            message = str(refused.value)
            assert message.startswith(flag(name)) and repr(value) in message, message
            assert repr(flat(stored)[name]) in message, message
        same = build_parser().parse_args(["--set", f"{name}={flat(stored)[name]!s}"]) \
            if not isinstance(flat(stored)[name], tuple) else None
        if same is not None and not isinstance(flat(stored)[name], bool):
            check_resume_options(same, given_fields(same), stored, checkpoint)  # equal: accepted


def test_resume_with_the_run_s_preset_is_accepted_and_another_refused(checkpoint):
    stored = Config.preset("tiny")
    args = build_parser().parse_args(["--preset", "tiny", "--resume", str(checkpoint), "--steps", "9"])
    assert check_resume_options(args, given_fields(args), stored, checkpoint) == {"steps": 9}
    args = build_parser().parse_args(["--preset", "cpu", "--resume", str(checkpoint)])
    with pytest.raises(ValueError, match="--preset cpu: the checkpoint .* was made with image_size=16, this command line asks for image_size=32"):
        check_resume_options(args, given_fields(args), stored, checkpoint)


def test_resume_refusal_through_the_command_line(checkpoint, data, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(data), "--out", str(checkpoint.parent), "--resume", "auto",
              "--delta-rank", "7"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("vidgen-train: error: --delta-rank: the checkpoint") and "delta_rank=7" in err
