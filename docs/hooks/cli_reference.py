"""MkDocs hook: the CLI reference page is generated from the ``xentbench`` argument parser.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it is replaced by the
top-level help and each command's ``format_help()``, so the page is never written twice.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from xentbench.suites.cli.parser import build_parser  # the one place the parser builder is named

MARKER = "<!-- cli-reference -->"
HELP_WIDTH = 80  # fixed, so the page does not depend on the terminal; fits the page column


def _help(parser: argparse.ArgumentParser) -> str:
    """``parser.format_help()`` at HELP_WIDTH columns, as a fenced text block."""
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=HELP_WIDTH)
    return f"```text\n{parser.format_help().rstrip()}\n```"


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Each sub-command's parser and one-line help, in the order the parser declares them."""
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}


def cli_reference() -> str:
    """The markdown of every command's help: ``xentbench`` first, then one section each."""
    parser = build_parser()
    sections = ["## xentbench", _help(parser)]
    for name, (sub, summary) in _commands(parser).items():
        sections += [f"## xentbench {name}", f"{summary[:1].upper()}{summary[1:]}.", _help(sub)]
    return "\n\n".join(sections) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the marker, on the page that holds it, with the generated reference."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
