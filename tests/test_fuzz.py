"""A short run of the hostile-metadata fuzzer (benchmarks/fuzz.py; the long run's results are committed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(Path(ROOT) / "benchmarks"))
import fuzz  # noqa: E402


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    return fuzz.Campaign(work, fuzz.attack.build_good(work))


def test_short_fuzz_run_raises_only_nvcodec_errors(campaign):
    campaign.run(seconds=60, chunk=2, max_cases=2 * len(fuzz.TARGETS))
    report = campaign.report(1.0)
    assert report["cases"] >= len(fuzz.TARGETS)
    assert set(report["cases_by_target"]) == set(fuzz.TARGETS)
    assert report["failures"] == 0, report["failure_kinds"]
    assert report["command_runs"]["infer --json"] == report["cases"]


def test_the_fuzzer_reports_what_is_not_an_nvcodec_error(campaign, monkeypatch):
    from nvcodec.codec import info

    def broken(path):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(info, "describe", broken)
    before = campaign.failure_count
    campaign._run(["info", "--json", str(campaign.good.attached)], "video")
    assert campaign.failure_count == before + 1
    assert any(f["error"] == "ZeroDivisionError: boom" for f in campaign.failures.values())


def test_a_case_that_allocates_beyond_the_cap_is_a_failure(campaign, monkeypatch):
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from nvcodec.codec import info

    real = info.describe

    def hungry(path):
        np.ones(256 << 20, dtype=np.uint8)  # 256 MiB touched, then freed
        return real(path)

    monkeypatch.setattr(info, "describe", hungry)
    monkeypatch.setattr(campaign, "reference_mib", {False: 10.0, True: 10.0})
    before, over = campaign.failure_count, campaign.over_cap

    @settings(max_examples=1, database=None, deadline=None, derandomize=True)
    @given(data=st.data())
    def one(data):
        campaign.run_case("provenance", data)

    one()
    assert campaign.over_cap == over + 1 and campaign.failure_count == before + 1
    assert campaign.max_rise["mib"] >= 200
    assert any("allocation over the cap" in f["error"] for f in campaign.failures.values())


def test_calibration_refuses_a_good_file_the_commands_refuse(campaign, monkeypatch, tmp_path):
    """The harness checks itself: if the good file, written as the cases are, fails a command (here: its index
    no longer lists the fine base grid's feature), every case would test a file refused before its change."""
    from nvcodec.container.layout import DICT_FEATURE, RANS_FEATURE

    craft = fuzz.attack.craft
    monkeypatch.setattr(fuzz.attack, "craft", lambda path, sections: craft(path, sections, (RANS_FEATURE, DICT_FEATURE)))
    fresh = fuzz.Campaign(tmp_path, campaign.good)
    with pytest.raises(RuntimeError, match="does not pass every command"):
        fresh.calibrate(repeats=1)
