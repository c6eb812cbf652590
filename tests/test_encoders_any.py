"""Any transformers text encoder plans from its config.json alone: a local directory or a hub id in the
local Hugging Face cache; parameter bytes exactly those of the model transformers builds (meta device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from typer.testing import CliRunner

from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.plan.profiles import encoder_availability, load_encoder

runner = CliRunner()

CONFIGS = {
    "mpnet": lambda: transformers.MPNetConfig(max_position_embeddings=514),  # all-mpnet-base-v2's shape
    "xlm-roberta": lambda: transformers.XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514,
                                                         type_vocab_size=1),
    "deberta-v2": lambda: transformers.DebertaV2Config(),
    # DeBERTa-v3-base's shape: relative attention with shared keys, position buckets, no absolute positions.
    "deberta-v3": lambda: transformers.DebertaV2Config(
        vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
        pos_att_type="p2c|c2p", position_biased_input=False, max_relative_positions=-1, type_vocab_size=0),
    # Unshared position projections, a convolution and a factorised embedding: every branch of the formula.
    "deberta-v2-conv": lambda: transformers.DebertaV2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, embedding_size=32,
        relative_attention=True, pos_att_type=["c2p", "p2c"], share_att_key=False, conv_kernel_size=3,
        type_vocab_size=2),
    # No formula for ELECTRA: counted on the meta device (the path any other model type takes).
    "electra": lambda: transformers.ElectraConfig(),
}


def _meta_params_without_pooler(config) -> int:
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config)
    pooler = getattr(model, "pooler", None)
    skip = {id(p) for p in pooler.parameters()} if isinstance(pooler, torch.nn.Module) else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_config_only_directory_plans_with_exact_parameter_bytes(tmp_path, caplog, name):
    config = CONFIGS[name]()
    config.save_pretrained(tmp_path)
    result = runner.invoke(app, ["plan", "--labels", "10000", "--gpu-mem", "80G", "--encoder", str(tmp_path),
                                 "--seq-len", "64", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    n_params = _meta_params_without_pooler(config)
    assert plan["model"]["encoder"]["n_params"] == n_params
    assert plan["memory"]["terms_bytes"]["encoder_weights"] == 4 * n_params  # fp32 master weights
    # MPNet and DeBERTa have no SDPA path in transformers: their activations are priced for eager attention.
    assert plan["model"]["encoder"]["attention"] == ("eager" if name.startswith(("mpnet", "deberta")) else "sdpa")
    assert "no weights and no tokenizer" in caplog.text and "hf download" in caplog.text  # said, not fatal


def test_a_hub_id_in_the_local_cache_plans_and_a_missing_one_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--sentence-transformers--all-mpnet-base-v2"
    snapshot = repo / "snapshots" / "abc123"
    transformers.MPNetConfig(max_position_embeddings=514).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "model.safetensors").write_bytes(b"")  # the cache layout: weights and tokenizer present
    (snapshot / "tokenizer.json").write_text("{}")
    profile = load_encoder("sentence-transformers/all-mpnet-base-v2")
    assert profile.source == "hub:sentence-transformers/all-mpnet-base-v2" and profile.max_seq_len == 512
    assert encoder_availability(profile) is None
    result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "16G",
                                 "--encoder", "sentence-transformers/all-mpnet-base-v2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["encoder"]["name"] == "sentence-transformers/all-mpnet-base-v2"
    missing = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "16G", "--encoder", "org/not-cached"])
    assert missing.exit_code == 2
    assert "local Hugging Face cache" in missing.stderr and "hf download org/not-cached" in missing.stderr


def test_an_encoder_decoder_model_is_refused_in_one_line(tmp_path):
    transformers.T5Config(d_model=64, d_ff=128, num_layers=2, num_heads=4).save_pretrained(tmp_path)
    with pytest.raises(XmcfitError, match="encoder-decoder") as info:
        load_encoder(str(tmp_path))
    assert "\n" not in str(info.value)


def test_planning_a_formula_family_imports_no_torch(tmp_path):
    import subprocess
    import sys

    transformers.MPNetConfig().save_pretrained(tmp_path)
    code = ("import sys; from xmcfit.plan.profiles import load_encoder; load_encoder(sys.argv[1]); "
            "print('torch' in sys.modules or 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
