"""The run directory's format: which files a training run writes, and run.json.

Layout: .xmcfit-run (the marker, written first), plan.json (the plan trained), run.json (format version,
data options, status, the plan's and the final weights' SHA-256), labels.json
(label vocabulary), label_counts.npy (training frequency per label, for propensities), encoder/ (config
and tokenizer, so the run loads without the original encoder), clusters.npy (aux-objective label
clusters), train_log.jsonl, checkpoint/, and at the end model.safetensors (its SHA-256 in
model.safetensors.sha256, written before it) and memory.json.
Pure Python: the trainer writes these files, eval and predict read them.

A directory is a run only when xmcfit made it: `.xmcfit-run` is the first file written into a new or empty
directory, and every command that writes into a run (train --out on an existing directory, --resume,
restart in place, checkpoint pruning) asks for it; a non-empty directory without it is refused before
anything is written, so a slip like `--out .` never overwrites or deletes a file of the user's.

A run's lifecycle lives here too: one writer at a time (an exclusive lock on `.lock`, released by the
kernel when the process dies, so kill -9 never leaves a stale lock), and a run that wrote no checkpoint
yet restarts in place from step 0 on `--resume` instead of being stuck.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xmcfit.version import __version__
from xmcfit.atomic import atomic_write_text, file_sha256
from xmcfit.errors import XmcfitError
from xmcfit.jsonfile import read_json_object
from xmcfit.plan.schema import Plan, PlanError, dataclass_from_dict

log = logging.getLogger(__name__)

RUN_FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoint"
RUN_MARKER = ".xmcfit-run"
"""Written first into a run directory xmcfit creates: what makes a directory a run xmcfit may write into."""
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one run directory."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / RUN_MARKER

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def run(self) -> Path:
        return self.root / "run.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def label_counts(self) -> Path:
        return self.root / "label_counts.npy"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def tfidf_vocab(self) -> Path:
        """The TF-IDF side's word vocabulary of a text run (xmcfit.data.words.WordVocab)."""
        return self.root / "tfidf_vocab.json"

    @property
    def clusters(self) -> Path:
        return self.root / "clusters.npy"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def weights_checksum(self) -> Path:
        """`<sha256>  model.safetensors` (sha256sum's format), written before the weights are renamed into place."""
        return self.root / "model.safetensors.sha256"

    @property
    def memory(self) -> Path:
        return self.root / "memory.json"

    @property
    def step_time(self) -> Path:
        """Measured step times beside the time model's prediction (xmcfit.train.timing.StepTimeReport)."""
        return self.root / "step_time.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def derived(self) -> tuple[Path, ...]:
        """What a training run derives before its first checkpoint (cleared when it restarts in place)."""
        return (self.labels, self.label_counts, self.encoder, self.clusters, self.log, self.tensorboard,
                self.checkpoints)


@dataclass(frozen=True)
class DataOptions:
    """How to read the training data; recorded in run.json so eval and resume read it the same way."""

    path: str
    text_fields: tuple[str, ...] | None = None
    label_field: str | None = None
    limit: int | None = None
    """Read only the first `limit` training points (quick runs, CPU benchmarks)."""


@dataclass(frozen=True, kw_only=True)
class MemoryReport:
    """memory.json: the plan's predicted memory beside what the run measured (bytes, per device)."""

    device: str
    """"cpu" or the CUDA device's name."""
    predicted_peak_bytes: int
    dense_predicted_peak_bytes: int
    predicted_terms_bytes: dict[str, int]
    """The plan's memory terms (xmcfit.plan.memory)."""
    measured_terms_bytes: dict[str, int]
    """The persistent tensors the trainer held, under the planner's term names."""
    measured_peak_bytes: int
    """CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak resident set."""
    measured_reserved_bytes: int | None = None
    """CUDA only: torch.cuda.max_memory_reserved (the allocator's pool, fragmentation included)."""
    measured_peak_rss_growth_bytes: int | None = None
    """CPU only: growth of the resident set over what it was when training started."""
    note: str
    """How to read measured_peak_bytes on this device."""

    def to_json(self) -> str:
        """Indented JSON without the fields this device does not measure."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, indent=2) + "\n"

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_file(cls, path: Path) -> "MemoryReport":
        """Read memory.json; a missing, malformed or mistyped file is one XmcfitError line."""
        data = read_json_object(path)
        try:
            return dataclass_from_dict(cls, data)
        except PlanError as err:
            raise XmcfitError(f"{path}: {err}") from None


def read_run_info(root: Path) -> dict[str, Any]:
    """The run's run.json; a folder without one, or a run.json that cannot be read, is one XmcfitError line."""
    run_json = RunFiles(root).run
    if not run_json.is_file():
        raise XmcfitError(f"{root}: not a run directory (no run.json)")
    return read_json_object(run_json)


def write_run_info(root: Path, info: dict[str, Any]) -> None:
    atomic_write_text(RunFiles(root).run, json.dumps(info, indent=2) + "\n")


def check_run_format(root: Path, info: dict[str, Any]) -> None:
    """One XmcfitError line unless run.json says the run has this xmcfit's run format."""
    if info.get("run_format_version") != RUN_FORMAT_VERSION:
        raise XmcfitError(f"{root}: run format {info.get('run_format_version')!r} is not the supported "
                          f"{RUN_FORMAT_VERSION} (written by xmcfit {info.get('xmcfit_version')}); re-train")


def prepare_run_dir(plan: Plan, root: Path, options: DataOptions, data_fingerprint: str | None = None, *,
                    restart_unstarted: bool = False) -> None:
    """Create a fresh run directory holding the plan and run.json; never overwrite a run that has a
    checkpoint or finished. With `restart_unstarted`, a run that wrote no checkpoint yet is started again
    in place (its derived files cleared, this plan written), as `xmcfit train` does when rerun."""
    files = RunFiles(root)
    if files.run.exists() and restart_unstarted and can_restart_in_place(root, read_run_info(root)):
        log.warning("%s has no checkpoint yet: starting it again in place", root)
        clear_for_restart(root)
    elif files.run.exists():
        restart = ("it has no checkpoint yet: `xmcfit train --resume {root}` starts it again from step 0"
                   if not checkpoint_folders(files.checkpoints) else "continue it with `xmcfit train --resume {root}`")
        raise XmcfitError(f"{root} already holds a run: {restart.format(root=root)}, or choose another --out")
    make_run_root(root, options.path)
    plan.save(files.plan)
    write_run_info(root, {
        "run_format_version": RUN_FORMAT_VERSION,
        "xmcfit_version": __version__,
        "status": "training",
        "seed": plan.seed,
        "data": {**asdict(options), "path": str(Path(options.path).resolve())},
        "data_kind": plan.model.encoder.kind,
        "encoder": plan.model.encoder.name,
        "plan_sha256": file_sha256(files.plan),
        **({"data_fingerprint": data_fingerprint} if data_fingerprint else {}),
    })


def check_plan_unchanged(root: Path, info: dict[str, Any]) -> None:
    """One XmcfitError line when the run's plan.json is not the plan the run started with (its SHA-256 in
    run.json): a resumed run trains the plan it checkpointed, never an edited one."""
    recorded = info.get("plan_sha256")
    plan_path = RunFiles(root).plan
    if recorded and plan_path.is_file() and file_sha256(plan_path) != recorded:
        raise XmcfitError(f"{plan_path}: changed since the run started (its SHA-256 differs from run.json's "
                          "plan_sha256); restore it, or train the edited plan as a new run with another --out")


def record_plan(root: Path, plan: Plan) -> None:
    """Save `plan` as the run's plan.json and record its SHA-256 in run.json (a plan xmcfit changed itself,
    such as --auto-recover's smaller micro-batch)."""
    plan.save(RunFiles(root).plan)
    info = read_run_info(root)
    info["plan_sha256"] = file_sha256(RunFiles(root).plan)
    write_run_info(root, info)


def data_options_of(info: dict[str, Any]) -> DataOptions:
    d = info["data"]
    return DataOptions(d["path"], tuple(d["text_fields"]) if d.get("text_fields") else None,
                       d.get("label_field"), d.get("limit"))


def checkpoint_folders(root: Path) -> list[Path]:
    """Complete checkpoint folders `step-N` under `root` (not .tmp, .old or .corrupt), newest step first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


class RunLock:
    """An exclusive, non-blocking lock on a run directory for as long as one process writes it.

    flock(2) on `<run>/.lock`: the kernel releases it when the process ends however it ends, so a
    killed run never leaves a stale lock; the file keeps the holder's pid for the refusal message. A
    second writer (another `xmcfit train` on the same directory) gets one XmcfitError line.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        path = RunFiles(self.root).lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise XmcfitError(f"{self.root}: cannot lock the run directory ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise XmcfitError(f"{self.root} is in use by another xmcfit process (pid {holder}); wait for it to "
                              "finish or stop it, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_run_target(root: Path, data_path: str | Path | None = None) -> None:
    """One XmcfitError line unless `root` may become (or already is) a run directory: new, empty, or marked
    as xmcfit's; never the training data's directory or one holding it. Writes nothing."""
    if root.exists() and not root.is_dir():
        raise XmcfitError(f"--out {root}: is a file, not a directory; choose another --out")
    if data_path is not None and Path(data_path).exists():
        data, out = Path(data_path).resolve(), root.resolve()
        if out == data or out in data.parents:
            raise XmcfitError(f"--out {root}: holds the training data ({data_path}); choose a new directory for "
                              "the run")
    if root.is_dir() and not is_run_dir(root) and _non_empty(root):
        raise XmcfitError(f"--out {root}: an existing directory that is not an xmcfit run (no {RUN_MARKER}) and not "
                          "empty; xmcfit writes runs only into a new or empty directory: choose another --out")


def _non_empty(root: Path) -> bool:
    try:
        return any(root.iterdir())
    except OSError as err:
        raise XmcfitError(f"--out {root}: cannot list the directory ({err.strerror or err})") from None


def is_run_dir(root: Path) -> bool:
    """True when xmcfit made `root` as a run directory (its marker file is there)."""
    return RunFiles(root).marker.is_file()


def require_run_dir(root: Path) -> None:
    """One XmcfitError line unless `root` is a run directory xmcfit made (before writing into it)."""
    if not root.is_dir():
        raise XmcfitError(f"{root}: no such run directory")
    if not is_run_dir(root):
        raise XmcfitError(f"{root}: not a run directory made by xmcfit (no {RUN_MARKER}); xmcfit writes only "
                          "into runs it made")


def make_run_root(root: Path, data_path: str | Path | None = None) -> None:
    """Create the run directory (and parents) and mark it as xmcfit's (the marker is its first file); one
    XmcfitError line when it cannot be, or when `root` is a non-empty directory xmcfit did not make."""
    check_run_target(root, data_path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise XmcfitError(f"--out {root}: cannot create the run directory ({err.strerror or err})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise XmcfitError(f"--out {root}: the run directory is not writable")
    if not is_run_dir(root):
        atomic_write_text(RunFiles(root).marker, json.dumps({"xmcfit_run": RUN_FORMAT_VERSION,
                                                             "xmcfit_version": __version__}) + "\n")


def can_restart_in_place(root: Path, info: dict[str, Any]) -> bool:
    """True for an unfinished run that wrote no complete checkpoint: nothing of value is lost by starting
    it again from step 0 (Ctrl-C in its first seconds, kill -9 during epoch 1)."""
    return info.get("status") != "done" and not checkpoint_folders(RunFiles(root).checkpoints)


def clear_for_restart(root: Path) -> None:
    """Remove what a run derived before its first checkpoint (keeps plan.json and run.json); only in a
    directory xmcfit made, and only the files a run writes."""
    require_run_dir(root)
    for path in RunFiles(root).derived():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def trim_log(path: Path, step: int) -> None:
    """Keep train_log.jsonl's records up to `step` (the checkpoint a run resumes from): the steps after
    it are replayed and logged again, so they must not appear twice. A torn last line is dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
