"""The run directory's format: which files a training run writes, and run.json.

Layout: plan.json (the plan trained), run.json (format version, data options, status), labels.json
(label vocabulary), label_counts.npy (training frequency per label, for propensities), encoder/ (config
and tokenizer, so the run loads without the original encoder), clusters.npy (aux-objective label
clusters), train_log.jsonl, checkpoint/, and at the end model.safetensors and memory.json.
Pure Python: the trainer writes these files, eval and predict read them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xmcfit import __version__
from xmcfit.atomic import atomic_write_text
from xmcfit.errors import XmcfitError
from xmcfit.plan.schema import Plan, PlanError, dataclass_from_dict

RUN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one run directory."""

    root: Path

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
    def clusters(self) -> Path:
        return self.root / "clusters.npy"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def memory(self) -> Path:
        return self.root / "memory.json"


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
        try:
            data = json.loads(path.read_text())
            return dataclass_from_dict(cls, data)
        except OSError as err:
            raise XmcfitError(f"{path}: cannot read ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise XmcfitError(f"{path}: not valid JSON ({err.msg})") from None
        except PlanError as err:
            raise XmcfitError(f"{path}: {err}") from None


def read_run_info(root: Path) -> dict[str, Any]:
    files = RunFiles(root)
    try:
        return json.loads(files.run.read_text())
    except OSError:
        raise XmcfitError(f"{root}: not a run directory (no run.json)") from None
    except json.JSONDecodeError as err:
        raise XmcfitError(f"{files.run}: not valid JSON ({err.msg})") from None


def write_run_info(root: Path, info: dict[str, Any]) -> None:
    atomic_write_text(RunFiles(root).run, json.dumps(info, indent=2) + "\n")


def check_run_format(root: Path, info: dict[str, Any]) -> None:
    """One XmcfitError line unless run.json says the run has this xmcfit's run format."""
    if info.get("run_format_version") != RUN_FORMAT_VERSION:
        raise XmcfitError(f"{root}: run format {info.get('run_format_version')!r} is not the supported "
                          f"{RUN_FORMAT_VERSION} (written by xmcfit {info.get('xmcfit_version')}); re-train")


def prepare_run_dir(plan: Plan, root: Path, options: DataOptions) -> None:
    """Create a fresh run directory holding the plan and run.json; never overwrite an existing run."""
    files = RunFiles(root)
    if files.run.exists():
        raise XmcfitError(f"{root} already holds a run: continue it with `xmcfit train --resume {root}` "
                          "or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    plan.save(files.plan)
    write_run_info(root, {
        "run_format_version": RUN_FORMAT_VERSION,
        "xmcfit_version": __version__,
        "status": "training",
        "seed": plan.seed,
        "data": {**asdict(options), "path": str(Path(options.path).resolve())},
        "data_kind": plan.model.encoder.kind,
        "encoder": plan.model.encoder.name,
    })


def data_options_of(info: dict[str, Any]) -> DataOptions:
    d = info["data"]
    return DataOptions(d["path"], tuple(d["text_fields"]) if d.get("text_fields") else None,
                       d.get("label_field"), d.get("limit"))
