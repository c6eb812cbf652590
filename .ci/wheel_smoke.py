"""The installed wheel from Python, as a user runs it from another directory (.ci/wheel-check calls this with
the fresh virtualenv's python): help(xmcfit.plan) names its parameters, and xmcfit.fit on a small sparse
matrix trains with progress lines on stderr and predicts arrays. About 15 s on a 2-core CPU (bag-of-words
path: no encoder download, no minilm extra)."""

from __future__ import annotations

import pydoc
import re
import subprocess
import sys

# A child process trains, so its stderr is a real pipe (not a terminal): TrainProgress then writes a plain
# line at the first and the last step, which is what a user sees in a log or CI.
FIT = """
import sys
import numpy as np
import scipy.sparse as sp
import xmcfit

n_points, n_labels, block = 96, 4, 10
rng = np.random.default_rng(0)
rows = np.repeat(np.arange(n_points), 4)
cols = np.concatenate([(i % n_labels) * block + rng.choice(block, 4, replace=False) for i in range(n_points)])
x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_points, n_labels * block))
y = sp.csr_matrix((np.ones(n_points), (np.arange(n_points), np.arange(n_points) % n_labels)), shape=(n_points, n_labels))
model = xmcfit.fit(x, y, out=sys.argv[1], device="cpu", progress=True, gpu_mem="4G", precision="fp32", batch=16,
                   epochs=3, fan_in=4, probe_epochs=0, aux_clusters=0)
top = model.predict(x[:8], k=2)
assert top.ids.shape == (8, 2) and top.scores.shape == (8, 2), (top.ids.shape, top.scores.shape)
print("predict ids", top.ids[:, 0].tolist())
"""
PROGRESS_LINE = re.compile(r"^step (\d+)/(\d+)\s+epoch \d+", re.M)


def check_help_shows_parameters() -> None:
    import xmcfit

    shown = pydoc.render_doc(xmcfit.plan, renderer=pydoc.plaintext)
    missing = [name for name in ("labels", "gpu_mem", "fan_in", "pooling") if f"{name}=" not in shown and
               f"{name}:" not in shown]
    if missing or "Choose a training configuration" not in shown:
        raise SystemExit(f"help(xmcfit.plan) does not show {missing or 'its docstring'}:\n{shown[:1500]}")
    print("help(xmcfit.plan): shows labels, gpu_mem, fan_in, pooling")


def check_fit_shows_progress(out: str) -> None:
    proc = subprocess.run([sys.executable, "-c", FIT, out], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"xmcfit.fit failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    steps = [(int(a), int(b)) for a, b in PROGRESS_LINE.findall(proc.stderr)]
    if not steps or steps[0][0] != 1 or steps[-1][0] != steps[-1][1]:
        raise SystemExit(f"xmcfit.fit(progress=True): no first and last progress line on stderr:\n{proc.stderr[-3000:]}")
    print(f"xmcfit.fit: {len(steps)} progress lines on stderr, steps 1..{steps[-1][1]}; {proc.stdout.strip()}")


def main() -> None:
    check_help_shows_parameters()
    check_fit_shows_progress(sys.argv[1] if len(sys.argv) > 1 else "fit-run")


if __name__ == "__main__":
    main()
