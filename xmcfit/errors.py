"""User-facing errors: a problem the user can fix, said in one line.

A plain exception, so the library (the plan schema included) loads no CLI framework. The command line
(xmcfit.cli) turns it into one `Error: ...` line on stderr and exit code 2.
"""


class XmcfitError(Exception):
    """A problem the user can fix (bad flag, bad file, infeasible plan); the message says what to change."""

    exit_code = 2
    """The process exit code the command line ends with."""
    is_error = True
    """False for a planned stop (a paused training run): the line is printed without `Error:`."""
