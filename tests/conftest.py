"""Shared fixtures: a tiny randomly initialised BERT (no download), synthetic data, and small plans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Every torch process the suite starts (this one, the CLI subprocesses, torchrun's workers) takes a share of
# the cores this one may use, as xmcfit's own launches do (xmcfit.threads): a test that runs a training in a
# subprocess beside this process's own no longer puts 2 x cores compute threads on the cores (issue 20).
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // 2)))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT config (random weights at load) with the embedded MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig

    from xmcfit.model import resolve_encoder_source

    out = tmp_path_factory.mktemp("tiny_bert")
    BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=64).save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_encoder_source("all-MiniLM-L6-v2"), local_files_only=True).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic text dataset: 240 train / 60 test points over 40 labels."""
    from xmcfit.data.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, n_train=240, n_test=60, n_labels=40, seed=3, words_per_text=10)
    return out


@pytest.fixture
def bow_dir(tmp_path) -> Path:
    """A toy XMC-text-format dataset: 60 train / 10 test points, 30 features, 6 labels (2 per point)."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["60 30 6"]
    for _ in range(60):
        labels = ",".join(str(x) for x in sorted(rng.choice(6, 2, replace=False)))
        feats = " ".join(f"{f}:1" for f in sorted(rng.choice(30, 5, replace=False)))
        lines.append(f"{labels} {feats}")
    data = tmp_path / "bow"
    data.mkdir()
    (data / "toy_train.txt").write_text("\n".join(lines) + "\n")
    (data / "toy_test.txt").write_text("\n".join(["10 30 6"] + lines[1:11]) + "\n")
    return data


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, tiny_encoder_dir, synth_dir) -> Path:
    """A finished run of the tiny BERT on the synthetic data (1 epoch, 15 steps); copy it before changing it."""
    from plan_factory import tiny_plan
    from xmcfit import api

    out = tmp_path_factory.mktemp("text_run")
    plan = out / "plan.json"
    tiny_plan(str(tiny_encoder_dir), 40, epochs=1, aux_clusters=0).save(plan)
    api.train(plan, synth_dir, out / "run", device="cpu")
    return out / "run"
