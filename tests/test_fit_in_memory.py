"""xmcfit.fit on data held in memory (texts or a sparse matrix, label lists or an indicator matrix), the
arrays predict returns, progress from Python, and one XmcfitError line for each bad input."""

from __future__ import annotations

import inspect
import pydoc

import numpy as np
import pytest
import scipy.sparse as sp

import xmcfit
from xmcfit import XmcfitError

TOPICS = ("apple banana cherry", "engine wheel brake", "guitar drum piano", "river mountain forest")
PLANNING = dict(gpu_mem="4G", precision="fp32", batch=16, epochs=3, fan_in=4, probe_epochs=0, aux_clusters=0)


def _texts_and_labels(n_per_topic: int = 16) -> tuple[list[str], list[list[str]]]:
    """Texts whose words name their topic: label i is topic i (names "topic-i"), one label per text."""
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(n_per_topic * len(TOPICS)):
        topic = i % len(TOPICS)
        words = TOPICS[topic].split()
        texts.append(" ".join(rng.choice(words, 6)))
        labels.append([f"topic-{topic}"])
    return texts, labels


def _bow(n_points: int = 96, n_features: int = 40, n_labels: int = 4) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Features whose block of 10 columns says the label: point i has label i % 4 and features in its block."""
    rng = np.random.default_rng(1)
    rows, cols = [], []
    for i in range(n_points):
        block = (i % n_labels) * (n_features // n_labels)
        for col in rng.choice(n_features // n_labels, 4, replace=False):
            rows.append(i)
            cols.append(block + col)
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_points, n_features))
    y = sp.csr_matrix((np.ones(n_points), (np.arange(n_points), np.arange(n_points) % n_labels)),
                      shape=(n_points, n_labels))
    return x, y


@pytest.fixture(scope="module")
def text_model(tmp_path_factory, tiny_encoder_dir):
    texts, labels = _texts_and_labels()
    events: list[xmcfit.TrainEvent] = []
    out = tmp_path_factory.mktemp("fit") / "run"
    model = xmcfit.fit(texts, labels, out=out, encoder=str(tiny_encoder_dir), seq_len=16, device="cpu",
                       progress=events.append, **PLANNING)
    return model, events, out


def test_fit_on_texts_returns_a_model_whose_arrays_rank_the_training_labels(text_model):
    model, _, _ = text_model
    texts, labels = _texts_and_labels()
    top = model.predict(texts, k=2)
    assert top.ids.shape == (len(texts), 2) and top.ids.dtype == np.int64
    assert top.scores.shape == (len(texts), 2) and top.scores.dtype == np.float32
    assert np.all(np.diff(top.scores, axis=1) <= 0)  # best first
    assert top.names.shape == (len(texts), 2) and top.probabilities is None
    hits = np.mean([labels[i][0] == top.names[i, 0] for i in range(len(texts))])
    assert hits >= 0.9  # the topic words make the label plain; the TF-IDF side alone finds it
    assert top[0][0].name == top.names[0, 0] and len(top) == len(texts)


def test_fit_names_string_labels_in_sorted_order_and_keeps_the_data_beside_the_run(text_model):
    model, _, out = text_model
    [[best]] = [labels[:1] for labels in model.predict("apple cherry banana apple", k=1)]
    assert (best.index, best.name) == (0, "topic-0")
    assert (out.parent / "run-data" / "train.jsonl").is_file()
    assert xmcfit.evaluate(model, data=out.parent / "run-data", split="train").metrics["P@1"] >= 0.9


def test_the_progress_callback_gets_every_step_with_its_epoch_loss_and_time_left(text_model):
    _, events, _ = text_model
    assert [e.step for e in events] == list(range(1, events[-1].total_steps + 1))
    assert events[-1].total_steps == 12 and {e.epoch for e in events} == {1, 2, 3}
    assert all(np.isfinite(e.loss) for e in events) and events[0].eta_s is None
    assert events[-1].eta_s == pytest.approx(0.0) and events[1].eta_s > 0


def test_fit_on_a_sparse_matrix_with_an_indicator_matrix_trains_a_bag_of_words_model(tmp_path):
    x, y = _bow()
    model = xmcfit.fit(x, y, out=tmp_path / "bow", label_names=["a", "b", "c", "d"], device="cpu", progress=False,
                       **PLANNING)
    assert model.input_kind == "bow" and model.plan.classifier.n_labels == 4
    top = xmcfit.predict(model, x[:8], k=3)
    assert top.ids.shape == (8, 3) and top.ids.dtype == np.int64 and top.scores.dtype == np.float32
    assert list(top.names[:, 0]) == [["a", "b", "c", "d"][i % 4] for i in range(8)]
    assert model.plan.model.encoder.kind == "bow"
    again = xmcfit.predict(model, x[:8], k=3)
    assert top == again and top == top.as_lists() and top != top.as_lists()[:7]
    assert top != xmcfit.predict(model, x[:8], k=2) and top != top.as_lists()[::-1]


@pytest.mark.parametrize(("inputs", "labels", "kwargs", "message"), [
    ("one text", [[0]], {}, "inputs: str: give a list of texts or a scipy.sparse feature matrix"),
    (["a", 3], [[0], [1]], {}, "inputs: 3 is not a string; give a list of texts (str)"),
    ([], [], {}, "inputs: no points to train on"),
    (["a", "b"], [[0]], {}, "labels: 1 label rows for 2 inputs; give one row per input"),
    (["a", "b"], [[0], ["x"]], {}, "labels: mixes strings and integers; give all labels as one or the other"),
    (["a", "b"], [[0], [-1]], {}, "labels[1]: label id -1: must be >= 0"),
    (["a", "b"], [[0], [True]], {}, "labels[1]: True: a label is an int id or a string"),
    (["a", "b"], [[0], "x"], {}, "labels[1]: 'x': each point's labels must be a list (of ints or strings)"),
    (["a", "b"], [[0], [3]], {"label_names": ["p", "q"]}, "labels: label id 3 but only 2 label_names"),
    (["a", "b"], [["x"], ["y\tz"]], {}, "label_names: 'y\\tz': a label name must be a non-empty string"),
    (["a", "b"], [[], []], {}, "labels: no label at all"),
    (sp.csr_matrix(np.array([[np.nan]])), [[0]], {}, "inputs: a feature matrix of shape (1, 1) with finite values"),
    (["a", "b"], [[0], [1]], {"out": 5}, "out=5: must be a path"),
    (["a", "b"], [[0], [1]], {"progress": "yes"}, "progress='yes': must be True, False or a function"),
    (["a", "b"], [[0], [1]], {"fan_out": 3}, "xmcfit.plan: unknown option 'fan_out'"),
    (["a", "b"], [[0], [1]], {"fan_in": "8"}, "--fan-in"),
])
def test_bad_inputs_are_one_error_line_and_write_nothing(tmp_path, inputs, labels, kwargs, message):
    args = {"out": tmp_path / "run", "gpu_mem": "4G", **kwargs}
    with pytest.raises(XmcfitError) as err:
        xmcfit.fit(inputs, labels, **args)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_plan_that_does_not_fit_leaves_no_data_behind(tmp_path):
    with pytest.raises(XmcfitError, match="--gpu-mem"):
        xmcfit.fit(["a b", "c d"], [["x"], ["y"]], out=tmp_path / "run", gpu_mem="16")
    assert list(tmp_path.iterdir()) == []


def test_help_and_signatures_show_the_parameters():
    for function, parameter in ((xmcfit.plan, "fan_in"), (xmcfit.fit, "label_names"), (xmcfit.train, "progress"),
                                (xmcfit.predict, "k"), (xmcfit.evaluate, "split")):
        shown = pydoc.render_doc(function, renderer=pydoc.plaintext)
        assert parameter in shown or parameter in str(inspect.signature(function))
        assert "progress" not in str(inspect.signature(xmcfit.plan))
    assert "gpu_mem" in str(inspect.signature(xmcfit.plan))
    assert "Choose a training configuration" in pydoc.render_doc(xmcfit.plan, renderer=pydoc.plaintext)
