"""The command-line reference, ``docs/cli.md``, written from the commands' own ``--help``.

``python -m vidgen_nb.cli_reference > docs/cli.md`` rewrites it; a test checks that the
page equals what this prints, so the page cannot drift from the options.
"""

from __future__ import annotations

import argparse

COMMANDS = ("vidgen-train", "vidgen-experiment", "vidgen-video")
WIDTH = 100  # columns of the help text, whatever the terminal


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, by the command's name."""
    from .experiments import build_parser as experiment
    from .render import build_parser as video
    from .train import build_parser as train

    return dict(zip(COMMANDS, (train(), experiment(), video())))


def reference() -> str:
    """The Markdown page: each command's ``--help`` in a code block."""
    parts = ["# Command-line reference", "",
             "Generated from each command's `--help` by `python -m vidgen_nb.cli_reference > "
             "docs/cli.md` (a test keeps it current). Every config field is an option of "
             "`vidgen-train` and `vidgen-experiment`, and `--set FIELD=VALUE` sets any of them "
             "by its own name; the field's name is shown in brackets.", ""]
    for name, parser in parsers().items():
        parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
        parts += [f"## {name}", "", "```", parser.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
