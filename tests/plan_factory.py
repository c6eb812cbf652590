"""Small, explicit plans for trainer tests, built field by field (independent of the chooser); the memory
section is priced by the planner's memory model, as `xmcfit plan` would."""

from __future__ import annotations

from xmcfit import __version__
from xmcfit.plan.memory import reprice
from xmcfit.plan.profiles import load_encoder
from xmcfit.plan.schema import (AuxSection, ClassifierSection, EncoderSpec, InputsSection, MemorySection,
                                ModelSection, Plan, RewiringSection, TfidfSection, TrainingSection,
                                index_dtype_for)


def tiny_plan(encoder: str, n_labels: int, *, kind: str = "sparse", fan_in: int = 8, epochs: int = 2,
              micro_batch: int = 16, grad_accum: int = 1, aux_clusters: int = 4, intermediate_dim: int = 0,
              value_dtype: str = "float32", optimizer: str = "adamw", rounding: str = "none",
              precision: str = "fp32", bow_features: int = 0, seed: int = 0,
              checkpointing: bool = False, probe_epochs: int = 0, input_weighting: str = "raw",
              loss_reduction: str = "mean", tfidf_fan_in: int = 0, tfidf_words: int = 200) -> Plan:
    """A plan for the 32-wide tiny BERT (or a bag-of-words projection when bow_features > 0); with
    `tfidf_fan_in` > 0 a TF-IDF side over the bag-of-words features or up to `tfidf_words` words."""
    if bow_features:
        enc = EncoderSpec("bow", "bow", bow_features * 32 + 32, 32, 0, 0, 0, bow_features, 0)
        seq_len = 0
    else:
        enc = load_encoder(encoder).to_spec()  # the tiny BERT's config.json: 32 wide, 2 layers
        seq_len = 24
    d = intermediate_dim or 32
    k = d if kind == "dense" else fan_in
    plan = Plan(
        schema_version=1, xmcfit_version=__version__, seed=seed, n_devices=1, precision=precision,
        inputs=InputsSection("manual", 2**30, n_labels, None, None, micro_batch * grad_accum, ()),
        model=ModelSection(enc, seq_len, "mean", 0.1, intermediate_dim, checkpointing, input_weighting),
        classifier=ClassifierSection(kind, n_labels, d, k, index_dtype_for(d), value_dtype, optimizer, rounding,
                                     0.02, 1e-4, 0.9, "squared_hinge", 16, True, loss_reduction),
        rewiring=RewiringSection(kind == "sparse", "fraction", 0.25, 3, 0.66, 16),
        aux=AuxSection(aux_clusters > 0, max(1, aux_clusters), 0.4, 0.5),
        training=TrainingSection(epochs, micro_batch, grad_accum, 1e-3, 0.01, 0.1, 1.0, 64, probe_epochs),
        memory=MemorySection({}, 1, 1, 2**30, "backward", ()),  # priced below
        tfidf=TfidfSection(tfidf_fan_in > 0, bow_features or tfidf_words, tfidf_fan_in, 1) if tfidf_fan_in else TfidfSection(),
        reasons=("test plan",),
    )
    return reprice(plan)


def train_plan(plan: Plan, run_dir, data_path, **kwargs):
    """Train `plan` on the data at `data_path` into `run_dir` as `xmcfit train` does (prepare the run directory
    unless resuming, read and check the data, run); kwargs go to run_training (resume, max_steps, ...)."""
    from xmcfit.rundir import DataOptions, prepare_run_dir
    from xmcfit.train.data import load_train_data
    from xmcfit.train.loop import run_training

    options = DataOptions(str(data_path))
    if not kwargs.get("resume"):
        prepare_run_dir(plan, run_dir, options)
    data = load_train_data(plan, run_dir, options, resume=bool(kwargs.get("resume")))
    return run_training(plan, run_dir, data, **kwargs)
