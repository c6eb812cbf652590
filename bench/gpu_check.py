"""One prepared GPU check (issue 11): what a session with one CUDA GPU runs, in one call, to measure what
the CPU cannot. Writes gpu_check.json and gpu_check.md into --out; prints the markdown, then one
`SUMMARY ...` line last.

Parts (each records its status, or why it was skipped, and its wall time):
  memory       the planner's prediction against torch.cuda.max_memory_allocated for 10 plans (the
               Amazon-3M shape first: a BERT-base-shaped encoder, 2,812,281 labels, fan-in 128), each
               trained for 4 steps with a rewiring at step 2; plus the CUDA context (driver-used memory
               minus PyTorch's reserved) and reserved / allocated (the fragmentation the model guesses)
  sparse_layer the Triton sparse layer against cuBLAS dense (nn.Linear): batch 128, d 768, L 3,000,000,
               fan-in 128, bf16, forward + backward, each beside its floor (bytes / measured copy bandwidth,
               FLOPs / measured bf16 matmul rate)
  rewire       one SET rewiring of 3,000,000 x 128 (25 % of each row), timed
  oom          a real CUDA out-of-memory: the process is capped (set_per_process_memory_fraction) between
               the predicted peaks of micro-batch b and b/2; the trainer, run with auto_recover (the
               `xmcfit train --auto-recover` path), must catch it, halve the micro-batch and finish
  eurlex       300 steps of the EURLEX57K GPU setting (bench/eurlex.py --setting gpu: 256 tokens, bf16 AMP,
               batch 64, planned for 16 GiB) on --data when given, else on a synthetic text dataset of the
               same label count (4,271 labels, xmcfit's generator), with a MiniLM-shaped encoder
  time_model   issue 20: the time model's prediction from this GPU's profile (datasheet peaks x the
               unfitted GPU_EFFICIENCY) against the median step of 7 configurations (bench/time_model.py's
               axes: dense and fan-in 128/64/32, aux head, intermediate layer, checkpointing, text and
               bag-of-words), bf16 AMP, batch 128; predicted / measured per row is what to refit with
Nothing is downloaded: encoders are randomly initialised from a config written here (BERT-base and
MiniLM shapes), with a word-level tokenizer built from the data's own words; datasets are generated
here. Training goes through xmcfit.train.loop.run_training, planning through xmcfit.plan.choose_plan
(what `xmcfit plan` / `xmcfit train` call).

How to run
  On a machine with one CUDA GPU, from the repository root (the GPU machine's python3 has torch,
  transformers and triton; xmcfit is imported from the checkout), about 5 minutes on an H200:
      PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out "$OUT"
      python3 bench/gpu_check.py --out DIR --data PATH/TO/EURLEX57K     # real EURLEX for the last part
  Budget: parts are skipped, with the reason, once --budget-s (default 420 s) is nearly spent, so the run
  stays inside 8 minutes; gpu_check.json / .md are rewritten after every part, so a killed run still
  leaves what it measured.
  Dry run (CI, no GPU): every size shrunk, on the CPU; the sparse layer runs the Triton kernels under
  TRITON_INTERPRET=1 when triton is installed (else the torch backend, said so); the out-of-memory is
  simulated (an error raised by a forward hook above a micro-batch size) since a CPU has no allocator cap:
      TRITON_INTERPRET=1 python bench/gpu_check.py --dry-run --out DIR
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

import torch

from common import GIB, MIB, SEED, median_seconds, sync
AMAZON_3M_LABELS = 2_812_281
EURLEX_LABELS = 4_271
MEMORY_STEPS = 4
"""Optimizer steps per memory plan; rewiring pinned every 2 steps happens at step 2 (it ends at 0.66 x 4)."""
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Sizes:
    """Every size the check uses; `dry` shrinks them all for a CPU run of a few seconds."""

    amazon_labels: int = AMAZON_3M_LABELS
    big_labels: int = 3_000_000
    mid_labels: int = 1_000_000
    small_labels: int = 100_000
    amazon670k_labels: int = 670_091
    wiki_labels: int = 30_938
    bow_features: int = 16_384
    bert: tuple[int, int, int, int] = (768, 12, 12, 3072)  # hidden, layers, heads, FFN
    minilm: tuple[int, int, int, int] = (384, 6, 12, 1536)
    text_vocab: int = 30_522
    n_words: int = 2000
    """Distinct words of the synthetic texts (the word-level tokenizer's vocabulary, < text_vocab)."""
    text_fan_in: int = 128
    low_fan_in: int = 32
    mid_fan_in: int = 64
    seq_len: int = 128
    batch: int = 128
    layer_shape: tuple[int, int, int, int] = (128, 768, 3_000_000, 128)  # batch, d, L, fan-in
    rewire_shape: tuple[int, int, int] = (3_000_000, 128, 768)  # L, fan-in, d
    timing_repeats: int = 5
    oom_seq_len: int = 512
    oom_micro_batch: int = 64
    eurlex_steps: int = 300
    eurlex_seq_len: int = 256
    eurlex_batch: int = 64
    eurlex_labels: int = EURLEX_LABELS
    eurlex_test: int = 1000
    time_steps: int = 10
    """Steps measured per configuration of the time_model part (after bench/time_model.py's warm-up steps)."""
    time_precision: str = "bf16_amp"

    @classmethod
    def dry(cls) -> "Sizes":
        return cls(amazon_labels=3_000, big_labels=3_000, mid_labels=1_000, small_labels=300, amazon670k_labels=700,
                   wiki_labels=310, bow_features=256, bert=(32, 2, 2, 64), minilm=(32, 2, 2, 64), text_vocab=600,
                   n_words=500, text_fan_in=16, low_fan_in=8, mid_fan_in=16, seq_len=16, batch=8,
                   layer_shape=(4, 32, 256, 8), rewire_shape=(3_000, 16, 64),
                   timing_repeats=1, oom_seq_len=16, oom_micro_batch=8, eurlex_steps=10, eurlex_seq_len=24,
                   eurlex_batch=8, eurlex_labels=50, eurlex_test=40, time_steps=2, time_precision="fp32")


# -- report ----------------------------------------------------------------------------------------------


class Report:
    """The JSON record and its markdown rendering, rewritten after every part."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out, self.data = out, {"meta": meta, "parts": {}}
        out.mkdir(parents=True, exist_ok=True)

    def part(self, name: str, result: dict[str, Any]) -> None:
        self.data["parts"][name] = result
        self.write()

    def write(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(render_markdown(self.data))


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.3f}"


def _pct(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{100 * (a / b - 1):+.1f}"


def render_markdown(data: dict[str, Any]) -> str:
    m = data["meta"]
    lines = [f"# GPU check ({'dry run, CPU' if m['dry_run'] else m['device']})", "",
             f"{m['date']}; torch {m['torch']}, triton {m['triton']}, device {m['device']}"
             + (f", {m['gpu_memory_bytes'] / GIB:.1f} GiB" if m.get("gpu_memory_bytes") else ""), ""]
    for name, part in data["parts"].items():
        lines += [f"## {name}: {part['status']} ({part.get('wall_s', 0):.0f} s)", ""]
        if part["status"] != "ok":
            lines += [part.get("reason", ""), ""]
        if name == "machine" and part["status"] == "ok":
            lines += [f"CUDA context + driver: {_gib(part.get('cuda_context_bytes'))} GiB (planner assumes "
                      f"{_gib(part.get('planner_cuda_context_bytes'))}); copy {part['copy_bytes_per_s'] / 1e9:.1f} GB/s; "
                      f"matmul {part['matmul_flops_per_s'] / 1e12:.1f} TFLOP/s ({part['matmul_dtype']})", ""]
        if name == "memory":
            lines += ["| plan | classifier | precision | micro-batch | predicted allocator GiB | max allocated GiB | err % "
                      "| max reserved GiB | reserved / allocated | predicted peak GiB (+context, margin) | phase | step s |",
                      "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
            for r in part.get("rows", []):
                if r.get("status") != "ok":
                    lines.append(f"| {r['name']} | {r.get('classifier', '')} | skipped: {r.get('reason', '')} |"
                                 + " |" * 9)
                    continue
                ratio = (r["max_reserved_bytes"] / r["max_allocated_bytes"]) if r.get("max_allocated_bytes") else None
                lines.append(
                    f"| {r['name']} | {r['classifier']} | {r['precision']} | {r['micro_batch']} | "
                    f"{_gib(r['predicted_allocator_bytes'])} | {_gib(r.get('max_allocated_bytes'))} | "
                    f"{_pct(r['predicted_allocator_bytes'], r.get('max_allocated_bytes'))} | "
                    f"{_gib(r.get('max_reserved_bytes'))} | {'-' if ratio is None else f'{ratio:.3f}'} | "
                    f"{_gib(r['predicted_peak_bytes'])} | {r['peak_phase']} | {r['step_s']:.3f} |")
            lines.append("")
        if name == "sparse_layer" and part["status"] == "ok":
            lines += [f"backend {part['backend']}, batch {part['shape'][0]}, d {part['shape'][1]}, L {part['shape'][2]:,}, "
                      f"k {part['shape'][3]}, {part['dtype']}", "",
                      "| model | pass | ms | floor ms | x floor | peak extra MiB |",
                      "| --- | --- | ---: | ---: | ---: | ---: |"]
            for kind in ("sparse", "dense"):
                row = part[kind]
                for p in ("fwd_s", "bwd_s", "fwd_bwd_s"):
                    extra = row.get("peak_extra_bytes")
                    lines.append(f"| {kind} | {p[:-2]} | {row[p] * 1e3:.2f} | {row['floor'][p] * 1e3:.2f} | "
                                 f"{row[p] / row['floor'][p]:.1f} | "
                                 + (f"{extra / MIB:.1f} |" if extra is not None and p == "fwd_bwd_s" else " |"))
            lines += ["", f"speed-up sparse over dense (fwd + bwd): {part['speedup']:.2f}x", ""]
        if name == "rewire" and part["status"] == "ok":
            lines += [f"L {part['n_labels']:,} x k {part['fan_in']} (d {part['in_features']}), fraction "
                      f"{part['fraction']}: median {part['median_s']:.3f} s over {len(part['times_s'])} "
                      f"(min {min(part['times_s']):.3f}), {part['n_moved']:,} connections moved", ""]
        if name == "oom" and part["status"] in ("ok", "failed"):
            lines += [f"{part['mode']}: micro-batch {part['micro_batch_before']} -> {part['micro_batch_after']}, "
                      f"accumulation {part['grad_accum_before']} -> {part['grad_accum_after']}, steps done "
                      f"{part['steps_done']}, recoveries {part['recoveries']}, failed step's model freed before "
                      f"the resumed steps: {part['old_model_freed']}"
                      + (f"; cap {_gib(part.get('cap_bytes'))} GiB between predicted {_gib(part.get('predicted_full_bytes'))}"
                         f" and {_gib(part.get('predicted_half_bytes'))}; max allocated after recovery "
                         f"{_gib(part.get('max_allocated_after_bytes'))}" if part.get("cap_bytes") else ""), ""]
        if name == "eurlex" and part["status"] == "ok":
            lines += [f"data: {part['data']}; {part['steps']} steps of batch {part['batch']} x {part['seq_len']} tokens, "
                      f"{part['classifier']}; median step {part['step_s'] * 1e3:.1f} ms; loss {part['loss_first']:.4f} -> "
                      f"{part['loss_last']:.4f}; max allocated {_gib(part['max_allocated_bytes'])} GiB vs predicted "
                      f"allocator {_gib(part['predicted_allocator_bytes'])} GiB; {part['eval_split']} P@1 "
                      f"{100 * part['p_at_1']:.2f}, P@5 {100 * part['p_at_5']:.2f}", ""]
        if name == "time_model" and part["status"] == "ok":
            lines += [f"rates: profile {part['profile']} (datasheet peaks x GPU_EFFICIENCY)", "",
                      "| configuration | predicted s/step | measured median s/step | error % | dominant phase | "
                      "predicted / measured |", "| --- | ---: | ---: | ---: | --- | ---: |"]
            for r in part["rows"]:
                if r.get("status") != "ok":
                    lines.append(f"| {r['name']} | {r.get('status')} | | | | |")
                    continue
                lines.append(f"| {r['name']} | {r['predicted_s']:.4f} | {r['median_s']:.4f} | {r['err_pct']:+.1f} | "
                             f"{r['dominant_phase']} | {r['implied_speed_vs_model']:.2f} |")
            lines.append("")
    return "\n".join(lines) + "\n"


# -- timing and machine ----------------------------------------------------------------------------------


def part_machine(device: torch.device, sizes: Sizes, dry: bool) -> dict[str, Any]:
    """The two ceilings (copy bandwidth, bf16 matmul rate) and, on CUDA, the context the allocator does not see."""
    from xmcfit.plan.memory import CUDA_CONTEXT_BYTES

    out: dict[str, Any] = {"planner_cuda_context_bytes": CUDA_CONTEXT_BYTES}
    n_copy = (1 if dry else 512) * 2**20  # fp32 elements: 2 GiB copied each way on a GPU
    src = torch.empty(n_copy, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t_copy = median_seconds(lambda: dst.copy_(src), device, 2, 5)
    out["copy_bytes_per_s"] = 2 * src.numel() * 4 / t_copy  # bytes read + bytes written
    del src, dst
    n = 256 if dry else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    t_mm = median_seconds(lambda: a @ b, device, 3, 10)
    out.update(matmul_flops_per_s=2 * n**3 / t_mm, matmul_dtype=str(dtype).replace("torch.", ""))
    del a, b
    if device.type == "cuda":
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(device)
        out["cuda_context_bytes"] = total - free - torch.cuda.memory_reserved(device)
        out["gpu_memory_bytes"] = total
    return out


# -- synthetic inputs: word vocabulary, tokenizer, encoder configs, datasets -------------------------------


def word_list(n_words: int) -> list[str]:
    from xmcfit.data.synth import pseudo_words

    return pseudo_words(n_words, np.random.default_rng(SEED))


def write_tokenizer(directory: Path, words: list[str]) -> int:
    """A word-level BERT tokenizer (WordPiece vocab of whole words) built offline; returns its size."""
    try:
        from transformers import BertTokenizerFast as Tokenizer
    except ImportError:  # transformers releases that keep one (tokenizers-backed) BertTokenizer
        from transformers import BertTokenizer as Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = list(SPECIAL_TOKENS) + [w for w in words if w not in SPECIAL_TOKENS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    Tokenizer(vocab_file=str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    return len(vocab)


def write_encoder(directory: Path, shape: tuple[int, int, int, int], vocab_size: int, tokenizer_from: Path) -> Path:
    """config.json of a BERT-shaped encoder (no weights: the trainer initialises it randomly) + a tokenizer."""
    from transformers import AutoTokenizer, BertConfig

    hidden, layers, heads, ffn = shape
    directory.mkdir(parents=True, exist_ok=True)
    BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=ffn, max_position_embeddings=512).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tokenizer_from, local_files_only=True, trust_remote_code=False).save_pretrained(directory)
    return directory


def _zipf_cdf(n: int) -> np.ndarray:
    cdf = np.cumsum(1.0 / np.arange(1, n + 1))
    return cdf / cdf[-1]


def write_text_dataset(directory: Path, n_labels: int, n_train: int, words: list[str], n_words: int,
                       n_test: int = 0) -> Path:
    """Text-pair dataset (train_texts/labels.txt, label_names.txt naming all n_labels): Zipf labels, 1-4 per
    text, each text n_words Zipf-drawn words, so every text fills the sequence length."""
    rng = np.random.default_rng(SEED)
    label_cdf, word_cdf = _zipf_cdf(n_labels), _zipf_cdf(len(words))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "label_names.txt").write_text("\n".join(f"l{i}" for i in range(n_labels)) + "\n")
    for split, n_points in (("train", n_train), ("test", n_test)):
        if not n_points:
            continue
        word_ids = np.minimum(np.searchsorted(word_cdf, rng.random((n_points, n_words))), len(words) - 1)
        texts = [" ".join(words[i] for i in row) for row in word_ids]
        labels = [" ".join(f"l{i}" for i in np.unique(np.minimum(
            np.searchsorted(label_cdf, rng.random(1 + int(rng.integers(0, 4)))), n_labels - 1))) for _ in range(n_points)]
        (directory / f"{split}_texts.txt").write_text("\n".join(texts) + "\n")
        (directory / f"{split}_labels.txt").write_text("\n".join(labels) + "\n")
    return directory


def write_bow_dataset(directory: Path, n_labels: int, n_train: int, n_features: int) -> Path:
    """XMC text format, via bench/scale_memory.py's generator (Zipf labels, label-specific features)."""
    from scale_memory import write_bow_dataset as write

    write(directory, n_labels, n_train, 8, n_features, SEED)
    return directory


# -- training driven through the library ------------------------------------------------------------------


class _Enough(Exception):
    """Raised from on_step to end a memory measurement after its steps, before any checkpoint is written."""


def plan_for(data: Path, budget: str, *, encoder: str = "all-MiniLM-L6-v2", seq_len: int | None = None,
             batch: int, epochs: int = 1, **pins: Any):
    """`xmcfit plan --data DATA --gpu-mem BUDGET ...` through the library (make_request + choose_plan). No
    linear-probe warm start unless pinned: the few steps measured must be end-to-end steps, whose peak the
    plan prices (a probe step holds no encoder activations)."""
    from xmcfit.plan.chooser import Pins, choose_plan
    from xmcfit.plan.inputs import make_request

    pins.setdefault("probe_epochs", 0)

    request = make_request(labels=None, dataset=None, data=str(data), gpu_mem=budget, gpu=None, gpu_index=0,
                           encoder=encoder, seq_len=seq_len, batch=batch, devices=1, epochs=epochs, seed=SEED,
                           pins=Pins(**pins))
    return choose_plan(request)


def train_steps(plan, data: Path, run_dir: Path, device: torch.device, n_steps: int | None,
                options: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """run_training for n_steps optimizer steps (None: the whole plan); peak allocator figures on CUDA."""
    from xmcfit.train.loop import run_training
    from xmcfit.rundir import DataOptions, prepare_run_dir
    from xmcfit.train.data import load_train_data

    shutil.rmtree(run_dir, ignore_errors=True)
    opts = DataOptions(str(data), **(options or {}))
    prepare_run_dir(plan, run_dir, opts)
    train_data = load_train_data(plan, run_dir, opts, resume=False)
    steps: list[dict[str, float]] = []

    def on_step(stats) -> None:
        n_points = plan.training.micro_batch * plan.training.grad_accum
        steps.append({"step": stats.step, "seconds": n_points / stats.points_per_s, "loss": stats.loss})
        if n_steps is not None and stats.step >= n_steps:
            raise _Enough

    result = None
    try:
        result = run_training(plan, run_dir, train_data, device=str(device), on_step=on_step, log_every=50, **kwargs)
    except _Enough:
        pass
    out: dict[str, Any] = {"steps": steps, "result": result}
    if device.type == "cuda":
        out.update(max_allocated_bytes=int(torch.cuda.max_memory_allocated(device)),
                   max_reserved_bytes=int(torch.cuda.max_memory_reserved(device)))
    return out


def _free(device: torch.device) -> None:
    """Return the last run's GPU memory to the driver, so the next measurement starts clean (a no-op on
    the CPU, where gc.collect() over transformers' and triton's objects costs half a second a call)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def describe(plan) -> str:
    c = plan.classifier
    if c.kind == "dense":
        return f"dense {c.n_labels:,} x {c.in_features}"
    dtype = "fp32" if c.value_dtype == "float32" else "bf16"
    extra = (f" +{plan.model.intermediate_dim} inter" if plan.model.intermediate_dim else "") + (
        f" +aux {plan.aux.n_clusters}" if plan.aux.enabled else "") + (
        " ckpt" if plan.model.gradient_checkpointing else "")
    return f"{c.n_labels:,} x k {c.fan_in}/{c.in_features} {dtype} {c.optimizer}{extra}"


# -- part: memory ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    name: str
    data: str  # key of the dataset (see MemoryInputs.data)
    encoder: str  # "bow", "bert" or "minilm"
    pins: dict[str, Any]


class MemoryInputs:
    """Datasets and encoders for the memory plans, written once into a work folder."""

    def __init__(self, work: Path, sizes: Sizes) -> None:
        self.work, self.sizes = work, sizes
        self.words = word_list(sizes.n_words)
        self.tokenizer = work / "tokenizer"
        write_tokenizer(self.tokenizer, self.words)
        self.encoders = {
            "bert": str(write_encoder(work / "bert-base-shape", sizes.bert, sizes.text_vocab, self.tokenizer)),
            "minilm": str(write_encoder(work / "minilm-shape", sizes.minilm, sizes.text_vocab, self.tokenizer)),
        }
        self._written: set[Path] = set()

    def data(self, key: str, n_points: int) -> Path:
        """'text-L' or 'bow-L' datasets of n_points training points, written on first use."""
        kind, n_labels = key.split("-")
        folder = self.work / f"{key}-{n_points}"
        if folder not in self._written:
            if kind == "text":
                write_text_dataset(folder, int(n_labels), n_points, self.words, self.sizes.seq_len + 8)
            else:
                write_bow_dataset(folder, int(n_labels), n_points, self.sizes.bow_features)
            self._written.add(folder)
        return folder


def memory_plans(s: Sizes) -> list[MemoryPlan]:
    """At least 8 plans over the axes the memory model prices; the Amazon-3M shape first."""
    common = {"rewiring_interval": 2, "intermediate_dim": 0}
    k, k_low, k_mid = s.text_fan_in, s.low_fan_in, s.mid_fan_in
    return [
        MemoryPlan("amazon3m-published", f"text-{s.amazon_labels}", "bert",
                   {**common, "precision": "fp16_amp", "fan_in": k, "aux_clusters": 0, "value_dtype": "float32",
                    "optimizer": "adamw", "gradient_checkpointing": False, "micro_batch": s.batch}),
        MemoryPlan("amazon3m-dense", f"text-{s.amazon_labels}", "bert",
                   {"precision": "fp16_amp", "aux_clusters": 0, "gradient_checkpointing": False, "micro_batch": s.batch,
                    "classifier": "dense"}),
        MemoryPlan("amazon3m-bf16-ckpt", f"text-{s.amazon_labels}", "bert",
                   {**common, "precision": "bf16_amp", "fan_in": k, "aux_clusters": 0, "value_dtype": "bfloat16",
                    "gradient_checkpointing": True, "micro_batch": s.batch}),
        MemoryPlan("amazon670k-minilm-aux", f"text-{s.amazon670k_labels}", "minilm",
                   {**common, "precision": "bf16_amp", "fan_in": k, "gradient_checkpointing": False,
                    "micro_batch": s.batch // 2}),
        MemoryPlan("wiki10-k32-inter", f"text-{s.wiki_labels}", "bert",
                   {**common, "intermediate_dim": None, "precision": "bf16_amp", "fan_in": k_low, "aux_clusters": 0,
                    "gradient_checkpointing": False, "micro_batch": s.batch // 4}),
        MemoryPlan("minilm-100k-accum4", f"text-{s.small_labels}", "minilm",
                   {**common, "precision": "fp32", "fan_in": k_mid, "aux_clusters": 0, "gradient_checkpointing": False,
                    "micro_batch": s.batch // 4}),
        MemoryPlan("bow-3m-k256-fp32-adamw", f"bow-{s.big_labels}", "bow",
                   {**common, "precision": "fp32", "fan_in": 256, "aux_clusters": 0, "value_dtype": "float32",
                    "optimizer": "adamw", "micro_batch": s.batch}),
        MemoryPlan("bow-1m-k64-bf16-sgdm", f"bow-{s.mid_labels}", "bow",
                   {**common, "precision": "fp32", "fan_in": 64, "aux_clusters": 0, "value_dtype": "bfloat16",
                    "optimizer": "sgd_momentum", "micro_batch": s.batch}),
        MemoryPlan("bow-1m-k128-fp32-sgd", f"bow-{s.mid_labels}", "bow",
                   {**common, "precision": "fp32", "fan_in": 128, "aux_clusters": 0, "value_dtype": "float32",
                    "optimizer": "sgd", "micro_batch": s.batch}),
        MemoryPlan("bow-100k-dense", f"bow-{s.small_labels}", "bow",
                   {"precision": "fp32", "aux_clusters": 0, "micro_batch": s.batch, "classifier": "dense"}),
    ]


def part_memory(device: torch.device, sizes: Sizes, work: Path, budget_bytes: int, deadline: float,
                dry: bool) -> dict[str, Any]:
    inputs = MemoryInputs(work / "memory", sizes)
    rows = []
    for mp in memory_plans(sizes):
        if time.monotonic() > deadline:
            rows.append({"name": mp.name, "status": "skipped", "reason": "time budget spent"})
            continue
        batch = sizes.batch
        n_points = MEMORY_STEPS * batch
        data = inputs.data(mp.data, n_points)
        encoder = "bow" if mp.encoder == "bow" else inputs.encoders[mp.encoder]
        seq_len = None if mp.encoder == "bow" else sizes.seq_len
        plan = plan_for(data, f"{budget_bytes}", encoder=encoder, seq_len=seq_len, batch=batch, **mp.pins)
        terms = plan.memory.terms_bytes
        row: dict[str, Any] = {
            "name": mp.name, "classifier": describe(plan), "precision": plan.precision,
            "micro_batch": plan.training.micro_batch, "grad_accum": plan.training.grad_accum,
            "predicted_peak_bytes": plan.memory.predicted_peak_bytes,
            "predicted_allocator_bytes": plan.memory.predicted_peak_bytes - terms["cuda_context"]
            - terms["fragmentation_margin"],
            "predicted_terms_bytes": dict(terms),
            "peak_phase": _peak_phase(plan)}
        started = time.perf_counter()
        _free(device)
        measured = train_steps(plan, data, work / "runs" / mp.name, device, MEMORY_STEPS)
        row.update(status="ok", wall_s=time.perf_counter() - started,
                   steps=len(measured["steps"]),
                   step_s=statistics.median(s["seconds"] for s in measured["steps"][1:] or measured["steps"]),
                   max_allocated_bytes=measured.get("max_allocated_bytes"),
                   max_reserved_bytes=measured.get("max_reserved_bytes"))
        del measured
        shutil.rmtree(work / "runs" / mp.name, ignore_errors=True)
        _free(device)
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok" and r.get("max_allocated_bytes")]
    errs = [abs(r["predicted_allocator_bytes"] / r["max_allocated_bytes"] - 1) for r in ok]
    return {"status": "ok", "rows": rows, "max_abs_err_pct": 100 * max(errs) if errs else None,
            "note": "dry run on the CPU: no allocator figures, the plans are trained for the code path only" if dry else ""}


def _peak_phase(plan) -> str:
    from xmcfit.plan.memory import Layout, predict

    return predict(Layout.from_plan(plan)).peak_phase


# -- part: sparse layer vs dense, rewiring -----------------------------------------------------------------


def part_sparse_layer(device: torch.device, sizes: Sizes, machine: dict[str, Any]) -> dict[str, Any]:
    from sparse_layer import floors, peak_extra_bytes, time_passes

    from xmcfit.sparse import dispatch

    if device.type != "cuda":
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and dispatch._triton_available():
            os.environ[dispatch.BACKEND_ENV] = "triton"  # the Triton kernels, interpreted on the CPU
        dtype, dtype_name = torch.float32, "fp32"  # CPU matmuls in bf16 are emulated, not representative
    else:
        dtype, dtype_name = torch.bfloat16, "bf16"
    try:
        backend = dispatch.backend_name(device)
        shape = sizes.layer_shape
        value_bytes = torch.finfo(dtype).bits // 8
        index_bytes = 2 if shape[1] <= 32767 else 4
        result: dict[str, Any] = {"status": "ok", "backend": backend, "shape": shape, "dtype": dtype_name}
        warmup = 0 if sizes.timing_repeats == 1 else 2  # the dry run times nothing worth a warm-up
        for kind in ("sparse", "dense"):
            row = time_passes(kind, *shape, dtype, device, warmup, sizes.timing_repeats, 65536)
            row["floor"] = floors(kind, *shape, value_bytes, index_bytes, machine["copy_bytes_per_s"],
                                  machine["matmul_flops_per_s"])
            if device.type == "cuda":
                _free(device)
                row["peak_extra_bytes"] = peak_extra_bytes(kind, *shape, dtype_name, str(device), 65536)
            _free(device)
            result[kind] = row
        result["speedup"] = result["dense"]["fwd_bwd_s"] / result["sparse"]["fwd_bwd_s"]
        if device.type != "cuda":
            result["note"] = (f"CPU dry run: {backend} backend"
                              + (" (Triton kernels under TRITON_INTERPRET=1)" if backend == "triton" else
                                 " (TRITON_INTERPRET=1 not set or triton missing: Triton skipped)"))
        return result
    finally:
        os.environ.pop(dispatch.BACKEND_ENV, None)


def part_rewire(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    from xmcfit.sparse import FixedFanInLinear, SETRewirer

    n_labels, fan_in, d = sizes.rewire_shape
    fraction = 0.25
    torch.manual_seed(SEED)
    layer = FixedFanInLinear(d, n_labels, fan_in, device=device, seed=SEED)
    optimizer = torch.optim.AdamW([layer.values], lr=1e-3)
    layer.values.grad = torch.randn_like(layer.values)
    optimizer.step()  # exp_avg / exp_avg_sq exist, so rewiring permutes and zeroes them too
    rewirer = SETRewirer(layer, optimizer, lambda step: fraction, interval=1, end_step=10**9, seed=SEED)
    times, stats = [], None
    for i in range(1 + sizes.timing_repeats):
        sync(device)
        start = time.perf_counter()
        stats = rewirer.step(i + 1)
        sync(device)
        if i >= 1:
            times.append(time.perf_counter() - start)
    assert stats is not None
    rows_ok = bool((layer.indices[:, 1:] > layer.indices[:, :-1]).all())  # sorted and distinct per row
    return {"status": "ok", "n_labels": n_labels, "fan_in": fan_in, "in_features": d, "fraction": fraction,
            "times_s": times, "median_s": statistics.median(times), "n_moved": int(stats.n_moved),
            "rows_sorted_and_distinct": rows_ok}


# -- part: out-of-memory and --auto-recover ------------------------------------------------------------------


class _BuildWatcher:
    """Wraps the trainer's build_model to keep a weak reference to every model it builds (and, in the dry run,
    to raise the out-of-memory error a CUDA allocator would, above a micro-batch size)."""

    def __init__(self, simulate_above: int | None) -> None:
        import xmcfit.train.setup as setup

        self.setup, self.real, self.models = setup, setup.build_model, []
        self.simulate_above = simulate_above

    def __enter__(self) -> "_BuildWatcher":
        def build(plan, *args, **kwargs):
            model = self.real(plan, *args, **kwargs)
            self.models.append(weakref.ref(model))
            if self.simulate_above is not None:
                limit = self.simulate_above

                def hook(module, inputs):
                    rows = inputs[0].shape[0] if inputs[0].dim() == 2 else inputs[1].shape[0]
                    if rows > limit:
                        raise torch.OutOfMemoryError(f"simulated CUDA out of memory: micro-batch {rows} > {limit}")

                model.encoder.register_forward_pre_hook(hook)
            return model

        self.setup.build_model = build
        return self

    def __exit__(self, *exc: Any) -> None:
        self.setup.build_model = self.real


def part_oom(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    from xmcfit.plan.memory import reprice
    from xmcfit.plan.schema import Plan

    words = word_list(sizes.n_words)
    tok = work / "oom-tokenizer"
    write_tokenizer(tok, words)
    encoder = str(write_encoder(work / "oom-bert", sizes.bert, sizes.text_vocab, tok))
    mb = sizes.oom_micro_batch
    data = write_text_dataset(work / "oom-data", 1000, 2 * mb, words, sizes.oom_seq_len + 8)
    plan = plan_for(data, "1T", encoder=encoder, seq_len=sizes.oom_seq_len, batch=mb, precision="bf16_amp"
                    if device.type == "cuda" else "fp32", micro_batch=mb, gradient_checkpointing=False, aux_clusters=0,
                    fan_in=sizes.mid_fan_in)
    half = reprice(replace(plan, training=replace(plan.training, micro_batch=mb // 2, grad_accum=2)))

    def allocator(p: Plan) -> int:
        t = p.memory.terms_bytes
        return p.memory.predicted_peak_bytes - t["cuda_context"] - t["fragmentation_margin"]

    out: dict[str, Any] = {"predicted_full_bytes": allocator(plan), "predicted_half_bytes": allocator(half),
                           "micro_batch_before": mb, "grad_accum_before": plan.training.grad_accum}
    run_dir = work / "runs" / "oom"
    _free(device)
    if device.type == "cuda":
        cap = (allocator(plan) + allocator(half)) // 2
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(cap / total, device)
        out.update(mode="real CUDA out-of-memory under a per-process cap", cap_bytes=cap)
        watcher = _BuildWatcher(simulate_above=None)
    else:
        out["mode"] = "simulated out-of-memory (CPU dry run: raised by a forward hook above micro-batch b/2)"
        watcher = _BuildWatcher(simulate_above=mb // 2)
    alive_at_resumed_steps: list[bool] = []
    try:
        with watcher:
            def on_step(stats) -> None:
                if not alive_at_resumed_steps:
                    gc.collect()  # reference cycles aside, is the failed run's model still held?
                alive_at_resumed_steps.append(len(watcher.models) > 1 and watcher.models[0]() is not None)

            from xmcfit.train.loop import TrainingStopped, run_training
            from xmcfit.rundir import DataOptions, prepare_run_dir
            from xmcfit.train.data import load_train_data

            shutil.rmtree(run_dir, ignore_errors=True)
            opts = DataOptions(str(data))
            prepare_run_dir(plan, run_dir, opts)
            train_data = load_train_data(plan, run_dir, opts, resume=False)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                result = run_training(plan, run_dir, train_data, device=str(device), auto_recover=True, on_step=on_step)
                steps_done, stopped = result.steps, ""
            except TrainingStopped as err:
                steps_done, stopped = -1, str(err)
    finally:
        if device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    final = Plan.from_json(run_dir / "plan.json")
    out.update(micro_batch_after=final.training.micro_batch, grad_accum_after=final.training.grad_accum,
               steps_done=steps_done, recoveries=int(round(math.log2(mb / final.training.micro_batch))),
               old_model_freed=bool(alive_at_resumed_steps) and not any(alive_at_resumed_steps),
               stopped=stopped)
    if device.type == "cuda":
        out["max_allocated_after_bytes"] = int(torch.cuda.max_memory_allocated(device))
    recovered = not stopped and final.training.micro_batch == mb // 2 and out["old_model_freed"]
    out["status"] = "ok" if recovered else "failed"
    if not recovered:
        out["reason"] = stopped or f"micro-batch ended at {final.training.micro_batch} (expected {mb // 2}); " \
                                   f"old model freed: {out['old_model_freed']}"
    shutil.rmtree(run_dir, ignore_errors=True)
    _free(device)
    return out


# -- part: EURLEX57K GPU setting -----------------------------------------------------------------------------


def _words_of(data: Path, fields: tuple[str, ...] | None, limit: int) -> list[str]:
    """The most frequent lower-cased words of the training texts (the word-level tokenizer's vocabulary)."""
    import re
    from collections import Counter

    from xmcfit.data import load_split

    split = load_split(data, "train", text_fields=fields, limit=limit)
    counts = Counter(w for text in split.texts for w in re.findall(r"\w+", text.lower()))
    return [w for w, _ in counts.most_common(30_000)]


def part_eurlex(device: torch.device, sizes: Sizes, work: Path, data_arg: str | None) -> dict[str, Any]:
    from xmcfit.data.synth import write_synthetic
    from xmcfit.evaluate import evaluate_runs

    n_points = sizes.eurlex_steps * sizes.eurlex_batch
    if data_arg and Path(data_arg).is_dir():
        data, fields, split = Path(data_arg), ("title", "header", "recitals", "main_body"), "dev"
        source = f"EURLEX57K at {data_arg} (first {n_points:,} training documents; {split} split)"
    else:
        why = f"--data {data_arg} is not a directory" if data_arg else "no --data given"
        data, fields, split = work / "eurlex-synth", None, "test"
        write_synthetic(data, n_train=n_points, n_test=sizes.eurlex_test, n_labels=sizes.eurlex_labels, seed=SEED,
                        words_per_text=sizes.eurlex_seq_len)
        source = (f"synthetic ({why}): xmcfit's generator, {sizes.eurlex_labels:,} labels, {n_points:,} train / "
                  f"{sizes.eurlex_test:,} test texts of {sizes.eurlex_seq_len} words")
    tok = work / "eurlex-tokenizer"
    vocab_size = write_tokenizer(tok, _words_of(data, fields, n_points))
    encoder = str(write_encoder(work / "eurlex-minilm-shape", sizes.minilm, vocab_size, tok))
    precision = "bf16_amp" if device.type == "cuda" else "fp32"
    plan = plan_for(data, "16G", encoder=encoder, seq_len=sizes.eurlex_seq_len, batch=sizes.eurlex_batch,
                    precision=precision)
    run_dir = work / "runs" / "eurlex"
    _free(device)
    options = {"text_fields": fields, "limit": n_points} if fields else {"limit": n_points}
    measured = train_steps(plan, data, run_dir, device, None, options=options)
    steps = measured["steps"]
    [evaluated] = evaluate_runs([run_dir], split=split, device=str(device))
    terms = plan.memory.terms_bytes
    result = {"status": "ok", "data": source, "steps": len(steps), "batch": plan.training.micro_batch,
              "seq_len": sizes.eurlex_seq_len, "classifier": describe(plan), "precision": plan.precision,
              "step_s": statistics.median(s["seconds"] for s in steps[1:] or steps),
              "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"], "eval_split": split,
              "p_at_1": float(evaluated.metrics["P@1"]), "p_at_5": float(evaluated.metrics["P@5"]),
              "max_allocated_bytes": measured.get("max_allocated_bytes"),
              "predicted_allocator_bytes": plan.memory.predicted_peak_bytes - terms["cuda_context"]
              - terms["fragmentation_margin"]}
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


# -- part: time_model (issue 20) ------------------------------------------------------------------------------


def time_model_configs(s: Sizes) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, dataset key, pins): the CPU table's axes (bench/time_model.py) at GPU sizes, bf16 AMP."""
    text = {"precision": s.time_precision, "micro_batch": s.batch, "tfidf": False, "aux_clusters": 0,
            "intermediate_dim": 0, "gradient_checkpointing": False}
    bow = {k: v for k, v in text.items() if k != "gradient_checkpointing"}
    text_key, bow_key = f"text-{s.eurlex_labels}", f"bow-{s.small_labels}"
    return [("text dense", text_key, {**text, "classifier": "dense"}),
            ("text k256", text_key, {**text, "fan_in": s.text_fan_in}),
            ("text k64 +aux", text_key, {**text, "fan_in": s.mid_fan_in, "aux_clusters": min(64, s.eurlex_labels // 4)}),
            ("text k32 +inter", text_key, {**text, "fan_in": s.low_fan_in, "intermediate_dim": 4 * s.minilm[0]}),
            ("text k64 ckpt", text_key, {**text, "fan_in": s.mid_fan_in, "gradient_checkpointing": True}),
            ("bow dense", bow_key, {**bow, "classifier": "dense"}),
            ("bow k64", bow_key, {**bow, "fan_in": s.mid_fan_in})]


def part_time_model(device: torch.device, sizes: Sizes, work: Path, deadline: float) -> dict[str, Any]:
    """Predicted (this GPU's profile, datasheet peaks x GPU_EFFICIENCY) against measured median step times of
    the CPU table's configurations; also the efficiency each row implies (predicted / measured)."""
    from time_model import WARMUP_STEPS, compare, measure_config, workload_of

    from xmcfit.plan.time_model import CPU_EFFICIENCY
    from xmcfit.plan.profiles import gpu_rates, load_gpu

    if device.type == "cuda":
        from xmcfit.plan.profiles import profile_for_device_name

        profile = profile_for_device_name(torch.cuda.get_device_name(device))
        if profile is None:
            return {"status": "skipped", "why": f"no GPU profile matches {torch.cuda.get_device_name(device)}"}
        rates = gpu_rates(load_gpu(profile))
    else:  # the dry run: the CPU's quick calibration stands in for a profile
        from time_model import quick_rates

        profile, rates = "cpu (dry run)", quick_rates(1)
    inputs = MemoryInputs(work, sizes)
    n_points = (WARMUP_STEPS + sizes.time_steps) * sizes.batch
    rows = []
    for name, key, pins in time_model_configs(sizes):
        if time.monotonic() > deadline:
            rows.append({"name": name, "status": "skipped (budget)"})
            continue
        data = inputs.data(key, n_points)
        encoder = inputs.encoders["minilm"] if key.startswith("text") else "all-MiniLM-L6-v2"
        plan = plan_for(data, "64G", encoder=encoder, seq_len=sizes.seq_len if key.startswith("text") else None,
                        batch=sizes.batch, **pins)
        _free(device)
        measured = measure_config(plan, data, {"limit": n_points}, device, work / "runs" / "time", sizes.time_steps)
        measured.pop("probes")
        row = compare(plan, rates, workload_of(data, {"limit": n_points}), measured)
        rows.append({"name": name, "status": "ok", **row, "implied_speed_vs_model": row["predicted_s"] / row["median_s"]})
    ok = [r for r in rows if r.get("status") == "ok"]
    return {"status": "ok" if ok else "failed", "profile": profile, "rows": rows,
            "cpu_efficiency_for_reference": vars(CPU_EFFICIENCY),
            "max_abs_err_pct": max((abs(r["err_pct"]) for r in ok), default=None)}


# -- main ------------------------------------------------------------------------------------------------------


def run_part(report: Report, name: str, deadline: float, min_left_s: float,
             fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one part unless the budget is nearly spent; record its wall time, or its error, in the report."""
    left = deadline - time.monotonic()
    if left < min_left_s:
        result = {"status": "skipped", "reason": f"time budget: {left:.0f} s left, the part needs about {min_left_s:.0f} s"}
    else:
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as err:  # a failed part is recorded and the next one still runs
            result = {"status": "error", "reason": f"{type(err).__name__}: {err}"}
        result["wall_s"] = time.perf_counter() - started
    print(f"# {name}: {result['status']} {result.get('reason', '')}", flush=True)
    report.part(name, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Folder for gpu_check.json and gpu_check.md.")
    parser.add_argument("--dry-run", action="store_true", help="Shrink every size and run on the CPU (CI).")
    parser.add_argument("--data", default=None, help="EURLEX57K directory for the eurlex part (else synthetic).")
    parser.add_argument("--budget-s", type=float, default=420.0, help="Wall-clock budget for all parts (seconds).")
    parser.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed at the end).")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget_s
    if args.dry_run:
        device, sizes = torch.device("cpu"), Sizes.dry()
        # Tiny tensors: one thread avoids OpenMP's spin-waiting, which on a shared 2-core CI machine made
        # the dry run several times slower.
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device, sizes = torch.device("cuda"), Sizes()
    else:
        print("no CUDA device: run with --dry-run for the CPU version of this check")
        return 2
    torch.manual_seed(SEED)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import importlib.util

    triton_version = "absent"
    if importlib.util.find_spec("triton") is not None:
        import triton

        triton_version = triton.__version__
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "dry_run": args.dry_run, "torch": torch.__version__,
            "triton": triton_version, "python": sys.version.split()[0], "sizes": vars(sizes),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "budget_s": args.budget_s}
    report = Report(Path(args.out), meta)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="xmcfit-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        machine = run_part(report, "machine", deadline, 0,
                           lambda: {"status": "ok", **part_machine(device, sizes, args.dry_run)})
        if "gpu_memory_bytes" in machine:
            meta["gpu_memory_bytes"] = machine["gpu_memory_bytes"]
        big = 0 if args.dry_run else 1
        run_part(report, "sparse_layer", deadline, 40 * big, lambda: part_sparse_layer(device, sizes, machine))
        run_part(report, "rewire", deadline, 30 * big, lambda: part_rewire(device, sizes))
        run_part(report, "oom", deadline, 40 * big, lambda: part_oom(device, sizes, work))
        run_part(report, "eurlex", deadline, 60 * big, lambda: part_eurlex(device, sizes, work, args.data))
        run_part(report, "time_model", deadline, 60 * big,
                 lambda: part_time_model(device, sizes, work, deadline - 60 * big))
        budget = machine.get("gpu_memory_bytes", 16 * GIB)
        # Leave ~40 s for the last plan to finish inside the budget.
        run_part(report, "memory", deadline, 60 * big,
                 lambda: part_memory(device, sizes, work, budget, deadline - 40 * big, args.dry_run))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    parts = report.data["parts"]
    print(render_markdown(report.data))
    mem = parts.get("memory", {})
    layer, rewire, oom, eurlex = (parts.get(k, {}) for k in ("sparse_layer", "rewire", "oom", "eurlex"))
    summary = [f"device={meta['device'].replace(' ', '_')}", f"dry_run={int(args.dry_run)}",
               f"wall_s={time.monotonic() - started:.0f}",
               "parts_ok=" + ",".join(k for k, v in parts.items() if v["status"] == "ok"),
               "parts_not_ok=" + (",".join(f"{k}:{v['status']}" for k, v in parts.items() if v["status"] != "ok")
                                  or "none"),
               f"memory_plans={sum(r.get('status') == 'ok' for r in mem.get('rows', []))}"]
    if mem.get("max_abs_err_pct") is not None:
        summary.append(f"memory_max_abs_err_pct={mem['max_abs_err_pct']:.1f}")
    if layer.get("status") == "ok":
        summary.append(f"sparse_speedup={layer['speedup']:.2f}")
    if rewire.get("status") == "ok":
        summary.append(f"rewire_s={rewire['median_s']:.3f}")
    if oom.get("status"):
        summary.append(f"oom_recovered={int(oom['status'] == 'ok')}")
    if eurlex.get("status") == "ok":
        summary.append(f"eurlex_p1={100 * eurlex['p_at_1']:.2f}")
    timing = parts.get("time_model", {})
    if timing.get("max_abs_err_pct") is not None:
        summary.append(f"time_model_max_abs_err_pct={timing['max_abs_err_pct']:.1f}")
    print("SUMMARY " + " ".join(summary))
    return 0 if all(v["status"] in ("ok", "skipped") for v in parts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
