"""The ``steadyclf`` command-line tool.

``main(argv)`` is the entry point (also used by tests). Every error steadyclf raises on
purpose (:class:`~steadyclf.exceptions.SteadyclfError`) becomes one line on stderr and
exit code 2; ``--debug`` shows the traceback instead. Commands live in sub-modules:
``cli.train``, ``cli.predict`` (predict, evaluate), ``cli.model`` (export, inspect),
``cli.diagnose`` (doctor, lr-find, demo) and ``cli.explain`` (explain, report);
``cli.common`` holds what they share.

Starting is cheap: a command's module is imported only when that command runs (or for
``--help``), and each module imports torch, scikit-learn, pandas or matplotlib inside the
functions that need them, so ``steadyclf --help`` and ``--version`` import none of them
and ``steadyclf predict`` imports neither torch nor matplotlib nor scikit-learn.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import import_module
from types import FrameType
from typing import Any, TextIO

import click

from ..exceptions import Interrupted, SteadyclfError, UnseenLevelsWarning
from ..io.escape import terminal
from ..version import __version__

__all__ = ["COMMANDS", "cli", "main"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM exits with 128 + 15 = 143

#: Command -> the module of this package that defines it (imported on first use).
COMMANDS = {
    "demo": "diagnose",
    "doctor": "diagnose",
    "evaluate": "predict",
    "explain": "explain",
    "export": "model",
    "inspect": "model",
    "lr-find": "diagnose",
    "predict": "predict",
    "report": "explain",
    "train": "train",
}


class LazyGroup(click.Group):
    """A command group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            # The module registers its commands on this group (``@cli.command()``).
            import_module(f".{COMMANDS[cmd_name]}", __name__)
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(__version__, prog_name="steadyclf")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Train binary classifiers on tabular data that converge, and say why when they don't."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with _sigterm_interrupts(), warnings.catch_warnings():
            # The library's warnings about the data, as the commands' own: one line each.
            warnings.simplefilter("default", UnseenLevelsWarning)
            shown = warnings.showwarning
            warnings.showwarning = lambda *a, **k: _show_warning(shown, *a, **k)
            cli.main(args=args, prog_name="steadyclf", standalone_mode=False)
    except click.exceptions.Abort as exc:
        click.echo(f"steadyclf: interrupted{_detail(exc.__cause__)}", err=True)
        return _interrupted_code(exc.__cause__)
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt as exc:
        click.echo(f"steadyclf: interrupted{_detail(exc)}", err=True)
        return _interrupted_code(exc)
    except SteadyclfError as exc:
        if debug:
            raise
        click.echo(f"steadyclf: error: {_one_line(str(exc))}", err=True)
        return EXIT_USER_ERROR
    return 0


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` as Ctrl-C raises KeyboardInterrupt.

    So a command stopped by a scheduler cleans up as one stopped by Ctrl-C (``finally``
    blocks remove temporary files, training saves a checkpoint) and exits with 143,
    instead of dying at once. Left alone where someone else already handles SIGTERM.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum=signum)

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupted_code(exc: BaseException | None) -> int:
    """128 + the signal that interrupted: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + getattr(exc, "signum", EXIT_INTERRUPTED - 128)


def _detail(exc: BaseException | None) -> str:
    """``': <message>'`` of an interruption that says more (e.g. where its checkpoint is)."""
    text = _one_line(str(exc)) if isinstance(exc, KeyboardInterrupt) else ""
    signum = getattr(exc, "signum", signal.SIGINT)
    if signum != signal.SIGINT:
        text = f"{signal.Signals(signum).name}" + (f"; {text}" if text else "")
    return f": {text}" if text else ""


def _show_warning(
    shown: Any,
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if issubclass(category, UnseenLevelsWarning):
        click.echo(f"steadyclf: warning: {_one_line(str(message))}", err=True)
    else:
        shown(message, category, filename, lineno, file, line)


def _one_line(message: str) -> str:
    """The message on one line of a terminal: data in it (a column named with an escape
    sequence) is shown, never acted on."""
    return terminal(" ".join(message.split()))
