"""The xmcfit command line: a typer app that only registers the command modules in xmcfit.commands.

User errors (xmcfit.errors.XmcfitError) print `Error: <one line>` on stderr and exit with code 2; the
app's command group does it, so the console script (`main`) and typer's test runner behave alike. In a
run of several processes (torchrun) rank 0 prints the errors they all share, another rank only its own.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from typer.core import TyperGroup

from xmcfit.errors import XmcfitError


class OneLineErrors(TyperGroup):
    """The app's command group: an XmcfitError from any command becomes `Error: ...` and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except XmcfitError as err:
            if _prints(err):
                typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(code=err.exit_code) from None


def _prints(err: XmcfitError) -> bool:
    """False for an error already reported by the processes it comes from, or one every process of a
    multi-process run raises alike (rank 0 prints it) seen in a rank other than 0."""
    if getattr(err, "reported", False):
        return False
    several = os.environ.get("WORLD_SIZE", "1") != "1"
    return not several or os.environ.get("RANK", "0") == "0" or getattr(err, "rank_specific", False)


app = typer.Typer(
    cls=OneLineErrors,
    name="xmcfit",
    help="Plan, train and evaluate extreme multi-label classifiers that fit the GPU you have.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # None keeps click's plain one-line error output instead of a multi-line rich panel.
    rich_markup_mode=None,
)

# Command registration: one block per command module (each module adds its own block below).
from xmcfit.commands import data as _data_cmd
app.add_typer(_data_cmd.app, name="data")
from xmcfit.commands import eval as _eval_cmd
app.command("eval")(_eval_cmd.eval_command)
app.command("predict")(_eval_cmd.predict_command)
from xmcfit.commands import plan as _plan_cmd
app.command("plan")(_plan_cmd.plan)
app.command("gpus")(_plan_cmd.gpus)
app.command("profiles")(_plan_cmd.profiles)
from xmcfit.commands import train as _train_cmd
app.command("train")(_train_cmd.train)


def main() -> None:
    """Console-script entry point (XmcfitError -> one `Error:` line on stderr, exit code 2)."""
    app()


if __name__ == "__main__":
    main()
