"""Profiles: shipped presets load, encoder parameter counts equal the real transformers models'."""

from __future__ import annotations

import json

import pytest

from xmcfit.errors import XmcfitError
from xmcfit.plan.profiles import (bert_like_n_params, encoder_profile_from_config, load_dataset, load_encoder, load_gpu,
                             profile_names)

REQUIRED = {
    "gpus": {"T4-16G", "V100-16G", "V100-32G", "RTX3090-24G", "RTX4090-24G", "A10-24G", "L4-24G", "A100-40G",
             "A100-80G", "H100-80G", "H200-141G"},
    "encoders": {"bert-base-uncased", "distilbert-base-uncased", "roberta-base", "bert-large-uncased",
                 "all-MiniLM-L6-v2"},
    "datasets": {"Eurlex-4K", "EURLex-4.3K", "Wiki10-31K", "AmazonCat-13K", "LF-AmazonTitles-131K",
                 "LF-WikiSeeAlso-320K", "Wiki-500K", "Amazon-670K", "LF-AmazonTitles-1.3M", "Amazon-3M"},
}


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_every_required_profile_ships_and_loads(kind):
    assert REQUIRED[kind] <= set(profile_names(kind))
    loader = {"gpus": load_gpu, "encoders": load_encoder, "datasets": load_dataset}[kind]
    for name in profile_names(kind):
        assert loader(name).name == name


def test_bf16_follows_compute_capability():
    for name in profile_names("gpus"):
        g = load_gpu(name)
        assert g.bf16 == (float(g.compute_capability) >= 8.0)


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(XmcfitError, match="unknown gpu profile 'Z80'.*T4-16G"):
        load_gpu("Z80")


def _meta_model(profile):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    common = dict(vocab_size=profile.vocab_size, max_position_embeddings=profile.max_position_embeddings)
    if profile.architecture == "distilbert":
        cfg = transformers.DistilBertConfig(dim=profile.hidden_size, n_layers=profile.n_layers,
                                            n_heads=profile.n_heads, hidden_dim=profile.intermediate_size, **common)
        cls = transformers.DistilBertModel
    else:
        config_cls = transformers.RobertaConfig if profile.architecture == "roberta" else transformers.BertConfig
        cfg = config_cls(hidden_size=profile.hidden_size, num_hidden_layers=profile.n_layers,
                         num_attention_heads=profile.n_heads, intermediate_size=profile.intermediate_size,
                         type_vocab_size=profile.type_vocab_size, **common)
        cls = transformers.RobertaModel if profile.architecture == "roberta" else transformers.BertModel
    with torch.device("meta"):
        return cls(cfg)


@pytest.mark.parametrize("name", sorted(REQUIRED["encoders"]))
def test_encoder_profile_param_count_equals_transformers_model(name):
    profile = load_encoder(name)
    model = _meta_model(profile)
    assert profile.n_params == sum(p.numel() for p in model.parameters())
    assert profile.n_params == bert_like_n_params(
        profile.architecture, hidden_size=profile.hidden_size, n_layers=profile.n_layers,
        intermediate_size=profile.intermediate_size, vocab_size=profile.vocab_size,
        max_position_embeddings=profile.max_position_embeddings, type_vocab_size=profile.type_vocab_size)


def test_encoder_profile_from_config_matches_the_embedded_minilm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}))
    derived = encoder_profile_from_config(tmp_path)
    assert derived.n_params == load_encoder("all-MiniLM-L6-v2").n_params
    assert load_encoder(str(tmp_path)).max_seq_len == 512


def test_encoder_dir_without_config_is_one_line_error(tmp_path):
    with pytest.raises(XmcfitError, match="no readable config.json"):
        load_encoder(str(tmp_path))
