"""The run directory's memory.json: written and read through one typed record; bad files are one line."""

from __future__ import annotations

import json

import pytest

from xmcfit.errors import XmcfitError
from xmcfit.rundir import MemoryReport


def _report(**over) -> MemoryReport:
    fields = dict(device="cpu", predicted_peak_bytes=10, dense_predicted_peak_bytes=20,
                  predicted_terms_bytes={"classifier_values": 4}, measured_terms_bytes={"classifier_values": 4},
                  measured_peak_bytes=30, measured_peak_rss_growth_bytes=5, note="CPU peak is the RSS")
    return MemoryReport(**{**fields, **over})


def test_memory_report_round_trips_and_omits_what_the_device_does_not_measure(tmp_path):
    report = _report()
    report.save(tmp_path / "memory.json")
    written = json.loads((tmp_path / "memory.json").read_text())
    assert "measured_reserved_bytes" not in written and written["measured_peak_rss_growth_bytes"] == 5
    assert MemoryReport.from_file(tmp_path / "memory.json") == report


@pytest.mark.parametrize("text, needle", [
    ("{", "not valid JSON"),
    ('{"device": "cpu"}', "missing field"),
    (json.dumps({**json.loads(_report().to_json()), "measured_peak_bytes": "many"}), "measured_peak_bytes"),
])
def test_a_bad_memory_json_is_one_line_naming_the_file(tmp_path, text, needle):
    path = tmp_path / "memory.json"
    path.write_text(text)
    with pytest.raises(XmcfitError, match=needle) as info:
        MemoryReport.from_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
