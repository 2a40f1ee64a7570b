"""Command line: ``waluigi-desk`` opens the window; subcommands script everything else.

Each subcommand lives in ``waluigi_desk/commands/<name>.py`` with ``NAME``, ``HELP``,
``configure(parser)`` and ``run(args) -> int``; add its module name to ``COMMANDS``.
Exit codes: 0 success, 2 bad usage (argparse), 1 a failure the message explains.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from waluigi_desk import __version__
from waluigi_desk.errors import KnownError

COMMANDS = ["chat", "ask", "models", "self_test", "eval", "scan", "score", "events", "bench", "fit"]


def common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command takes, before or after the subcommand name."""
    d = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("common options")
    g.add_argument("--home", metavar="DIR", default=d,
                   help="data folder (database, user models); default: WALUIGI_DESK_HOME or the "
                        "platform's user data folder")
    g.add_argument("--model", metavar="PATH", default=d, help="GGUF model file to use")
    g.add_argument("--n-ctx", type=int, metavar="N", default=d, help="context size in tokens")
    g.add_argument("--gpu-layers", metavar="auto|N", default=d, help="layers to offload to the GPU")
    g.add_argument("--threads", type=int, metavar="N", default=d, help="CPU threads (0: all cores)")
    g.add_argument("--engine", choices=("llama", "openai"), default=d, help="which engine generates")
    g.add_argument("--base-url", metavar="URL", default=d, help="OpenAI-compatible server (engine openai)")
    g.add_argument("--remote-model", metavar="NAME", default=d, help="model name on the server (engine openai)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waluigi-desk",
        description="Waluigi Desk: an offline chat client for local language models that watches "
                    "its model for the moment it turns. With no command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"waluigi-desk {__version__}")
    common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMANDS:
        try:
            mod = importlib.import_module(f"waluigi_desk.commands.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"waluigi_desk.commands.{mod_name}":
                continue  # a command not built yet
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        common_options(p, suppress=True)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "_run", None) is None:
            from waluigi_desk.ui.app import run_gui

            return run_gui(args)
        return int(args._run(args) or 0)
    except KnownError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(exc.hint, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
