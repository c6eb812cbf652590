"""plan.json fuzzing: chooser-made plans round-trip exactly; corrupted ones raise PlanError naming the field."""

from __future__ import annotations

import copy
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
from xmcfit.plan.schema import Plan, PlanError
from xmcfit.plan.profiles import load_encoder, profile_names

ENCODERS = [load_encoder(n).to_spec() for n in profile_names("encoders")]


@st.composite
def plans(draw) -> Plan:
    encoder = draw(st.sampled_from(ENCODERS))
    n_devices = draw(st.integers(1, 8))
    req = PlanRequest(n_labels=draw(st.integers(1, 3_000_000)), budget_bytes=draw(st.integers(40, 160)) * 2**30,
                      encoder=encoder, seq_len=draw(st.integers(1, encoder.max_seq_len)),
                      target_batch=n_devices * draw(st.integers(1, 256 // n_devices)), n_devices=n_devices,
                      bf16_supported=draw(st.booleans()), seed=draw(st.integers(0, 2**31)),
                      pins=Pins(aux_clusters=draw(st.sampled_from([None, 0, 64]))))
    return choose_plan(req)


def _paths(data, prefix=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    else:
        yield prefix


@settings(max_examples=30, deadline=None)
@given(plan=plans())
def test_random_valid_plans_round_trip(plan, tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "plan.json"
    plan.save(path)
    assert Plan.from_json(path) == plan
    assert Plan.from_dict(json.loads(plan.to_json())) == plan


@settings(max_examples=20, deadline=None)
@given(plan=plans())
def test_a_plan_saved_before_the_peak_was_stored_loads_with_the_peak_the_memory_model_gives(plan):
    raw = json.loads(plan.to_json())
    del raw["memory"]["peak_phase"], raw["memory"]["peak_terms"]  # plan.json as xmcfit 0.1 wrote it
    assert Plan.from_dict(raw) == plan


@settings(max_examples=150, deadline=None)
@given(plan=plans(), data=st.data())
def test_corrupted_plans_raise_plan_error_naming_the_field(plan, data):
    raw = json.loads(plan.to_json())
    path = data.draw(st.sampled_from([p for p in _paths(raw) if p[-1] != "reasons" and "terms_bytes" not in p]))
    bad = data.draw(st.sampled_from(["x", -1, None, [], {}, True, 1.5, 0, "remove", "extra"]))
    corrupted = copy.deepcopy(raw)
    node = corrupted
    for key in path[:-1]:
        node = node[key]
    if bad == "remove":
        del node[path[-1]]
    elif bad == "extra":
        node["surprise_field"] = 1
    else:
        node[path[-1]] = bad
    try:
        loaded = Plan.from_dict(corrupted)
    except PlanError as err:
        named = path[-1] if bad != "extra" else "surprise_field"
        # cross-field rules may name the field the value conflicts with; it is still one line
        assert "\n" not in str(err)
        assert named in str(err) or "." in str(err) or "=" in str(err)
    else:
        assert loaded.to_dict() is not None  # a corruption that is still valid (e.g. 0 where 0 is allowed)
