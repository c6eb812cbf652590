"""User-facing errors: an XmcfitError ends the CLI with one line on stderr and exit code 2.

It subclasses click's ClickException so the same one-line handling applies whether the command runs
from the console script or from typer's test runner; click is pure Python and already a dependency.
"""

import click


class XmcfitError(click.ClickException):
    """A problem the user can fix (bad flag, bad file, infeasible plan); the message says what to change."""

    exit_code = 2

    def __str__(self) -> str:
        return self.message
