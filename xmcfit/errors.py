"""User-facing errors: an XmcfitError ends the CLI with one `Error: ...` line on stderr and exit code 2.

It subclasses the ClickException that typer's command runner catches, so the same one-line handling
applies from the console script and from typer's test runner. Typer 0.2x+ vendors its own copy of
click (typer._click) and catches only that copy's exceptions; older typer uses click itself.
"""

try:
    from typer._click.exceptions import ClickException
except ImportError:  # typer without a vendored click
    from click import ClickException


class XmcfitError(ClickException):
    """A problem the user can fix (bad flag, bad file, infeasible plan); the message says what to change."""

    exit_code = 2

    def __str__(self) -> str:
        return self.message
