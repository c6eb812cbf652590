"""`xmcfit train --nproc N`: start N training processes on this machine through torchrun's launcher, and
turn their failures into one line. Torch is imported only when launching, so importing this is cheap.
"""

from __future__ import annotations

import logging
import os

from xmcfit.errors import XmcfitError


class ReportedError(XmcfitError):
    """The training processes stopped and already said why (rank 0's line is above); the launcher ends with
    their exit code: 2 for an error, 128 + the signal for a run paused by one."""

    reported = True

    def __init__(self, message: str, exit_code: int = XmcfitError.exit_code) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def launch(nproc: int, args: list[str]) -> None:
    """`python -m xmcfit <args>` in `nproc` processes on this machine, through torchrun's own launcher
    (torch.distributed.run, --standalone: one node, a free port). When they fail, ReportedError if a
    process said why (its `Error:` line), else one line naming the process that died and how."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun warns (several lines) unless OMP_NUM_THREADS is set; give each process its share of the cores
    # this process may use (its affinity), so N processes never run more compute threads than cores.
    from xmcfit.threads import allowed_cores, share_of_cores

    os.environ.setdefault("OMP_NUM_THREADS", str(share_of_cores(allowed_cores(), nproc)))
    # The launcher logs each failure as a multi-line report; the processes' own `Error:` lines say it.
    # Its loggers set their own levels (LOGLEVEL), so quiet each one while it runs.
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(("torch.distributed.elastic", "torch.distributed.run"))]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        run(get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "xmcfit",
                                          *args]))
    except SignalException as err:  # the processes got it too: they pause with a checkpoint and say so
        raise ReportedError(f"interrupted by signal {err.sigval}", 128 + int(err.sigval)) from None
    except ChildFailedError as err:
        failures = err.failures
        if any(f.exitcode == XmcfitError.exit_code for f in failures.values()):
            raise ReportedError("training failed") from None
        paused = [f.exitcode for f in failures.values() if f.exitcode > 128]  # a pause on a signal (128 + it)
        if paused:
            raise ReportedError("paused by a signal", paused[0]) from None
        rank, first = min(failures.items())
        how = f"signal {first.signal_name()}" if first.exitcode < 0 else f"exit code {first.exitcode}"
        raise XmcfitError(f"training process rank {rank} died ({how}); the last checkpoint is intact") from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
