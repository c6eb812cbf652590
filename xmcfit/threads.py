"""CPU threads chosen, not inherited: how many intra-op threads a process uses, and whether the machine is busy.

Two trainings on a 2-core machine, each with torch's default of one thread per core, ran 18 times slower
than alone (issue 20: 6 steps a minute against 107): 2 + 2 compute threads on 2 cores. So a process takes
its share of the cores it may run on (os.sched_getaffinity: taskset, cgroups' cpusets, SLURM), divided
among the processes launched together (torchrun's LOCAL_WORLD_SIZE), unless told otherwise by --threads
or OMP_NUM_THREADS. Pure functions here; `apply_threads` is the one call into torch.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

BUSY_LOAD_MARGIN = 0.5
"""The load (runnable_threads) may exceed the CPUs by this much before a run says the machine is busy: a
count sampled at an instant is noisy, and half a runnable thread is noise."""
LOAD_CHECK_EVERY_S = 5.0
"""Seconds between load checks during training."""
LOAD_SAMPLES = 3
"""Samples of the runnable-thread count per check, LOAD_SAMPLE_GAP_S apart; their median is the load
(about 10 ms of the training thread every LOAD_CHECK_EVERY_S: 0.2 %)."""
LOAD_SAMPLE_GAP_S = 0.005


def _procs_running() -> float | None:
    """Linux /proc/stat's procs_running, less the thread reading it; None where there is no such file."""
    try:
        with open("/proc/stat") as fh:
            line = next((ln for ln in fh if ln.startswith("procs_running ")), None)
    except OSError:
        return None
    return float(line.split()[1]) - 1.0 if line is not None else None


def runnable_threads() -> float | None:
    """The threads runnable now, machine-wide (the median of LOAD_SAMPLES procs_running samples), else the
    1-minute load average, else None. The instant count answers within a check: the 1-minute average needs
    about a minute to show a second run started beside this one (bench/RESULTS.md, "Two trainings sharing
    cores")."""
    samples = []
    for i in range(LOAD_SAMPLES):
        sample = _procs_running()
        if sample is None:
            break
        samples.append(sample)
        if i + 1 < LOAD_SAMPLES:
            time.sleep(LOAD_SAMPLE_GAP_S)
    if samples:
        return statistics.median(samples)
    try:
        return os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return None


def allowed_cores() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def share_of_cores(n_cores: int, n_processes: int) -> int:
    """Threads per process when `n_processes` share `n_cores`: an equal share, at least one."""
    return max(1, n_cores // max(1, n_processes))


def _positive_int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() and int(text) >= 1 else None


def intra_op_threads(n_cores: int, requested: int | None = None, env: Mapping[str, str] | None = None) -> int:
    """Threads for torch's intra-op pool: `requested` (--threads), else OMP_NUM_THREADS, else this process's
    share of `n_cores` among the LOCAL_WORLD_SIZE processes torchrun started on this machine."""
    env = os.environ if env is None else env
    if requested is not None:
        return requested
    from_env = _positive_int(env.get("OMP_NUM_THREADS"))
    if from_env is not None:
        return from_env
    return share_of_cores(n_cores, _positive_int(env.get("LOCAL_WORLD_SIZE")) or 1)


def apply_threads(n_threads: int) -> int:
    """Set torch's intra-op threads; the count set."""
    import torch

    torch.set_num_threads(n_threads)
    return n_threads


def busy_note(load: float, n_cpus: int) -> str:
    """"" when the machine has a CPU for every runnable thread, else a short note for the progress line:
    more runnable threads than CPUs means some of them, perhaps this run's, wait their turn."""
    if load <= n_cpus + BUSY_LOAD_MARGIN:
        return ""
    return f"machine busy: load {load:.1f} on {n_cpus} CPUs"


def threads_when_busy(own_threads: int, load: float, n_cpus: int) -> int:
    """Fewer threads when the machine has more runnable threads than CPUs: this process's share of the
    CPUs in proportion to the load (never more than it has). Two runs of 2 threads started together on 2
    cores each drop to 1 once the load shows them, instead of spin-waiting on each other's cores."""
    if load <= n_cpus + BUSY_LOAD_MARGIN:
        return own_threads
    return max(1, min(own_threads, int(own_threads * n_cpus / load)))


@dataclass
class LoadWatch:
    """Checks the machine's load at the start and every LOAD_CHECK_EVERY_S seconds: `note` is the latest
    verdict (busy_note), `threads` what this process should use now (threads_when_busy; only ever lowered:
    a run that gave threads back does not take them again and start the contention over)."""

    n_cpus: int
    threads: int
    every_s: float = LOAD_CHECK_EVERY_S
    last_check: float = -float("inf")
    note: str = ""

    def check(self, now: float) -> str:
        if now - self.last_check >= self.every_s:
            self.last_check = now
            load = runnable_threads()
            if load is None:
                return self.note
            before, self.threads = self.threads, threads_when_busy(self.threads, load, self.n_cpus)
            self.note = busy_note(load, self.n_cpus) + (f"; threads {before} -> {self.threads}"
                                                        if self.threads != before else "")
        return self.note
