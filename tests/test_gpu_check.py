"""bench/gpu_check.py --dry-run: the prepared GPU check runs end to end on the CPU, so it cannot rot
between the sessions that have a GPU to run it on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
PARTS = ("machine", "sparse_layer", "rewire", "oom", "eurlex", "time_model", "memory")


def test_gpu_check_dry_run_writes_every_part_and_a_summary(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)], text=True,
                          capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("SUMMARY ")
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["meta"]["dry_run"] is True
    assert {name: part["status"] for name, part in report["parts"].items()} == {name: "ok" for name in PARTS}
    rows = report["parts"]["memory"]["rows"]
    assert len(rows) >= 8 and all(r["status"] == "ok" and r["steps"] == 4 for r in rows)
    assert any(r["name"].startswith("amazon3m") for r in rows)
    oom = report["parts"]["oom"]
    assert oom["micro_batch_after"] == oom["micro_batch_before"] // 2 and oom["old_model_freed"] is True
    assert report["parts"]["eurlex"]["steps"] == 10
    assert "## memory: ok" in (tmp_path / "gpu_check.md").read_text()
