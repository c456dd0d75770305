"""Each detection task's own score threshold is the default of `infer` and the CLI; `--threshold` overrides it."""

import json
import subprocess
import sys

import pytest

from nvcodec.adapt.attach import attach
from nvcodec.models import nanodet as nd
from nvcodec.models.registry import get_task, readme_table
from nvcodec.route.infer import infer, task_threshold

from conftest import ROOT, copy_nvp, encode_tiny


def test_task_threshold_defaults_and_override():
    assert task_threshold(get_task("nanodet"), None) == nd.DEFAULT_THRESHOLD == 0.35
    assert task_threshold(get_task("detr"), None) == 0.7
    assert task_threshold(get_task("efficientnet_lite0"), None) is None
    assert task_threshold(get_task("nanodet"), 0.5) == 0.5
    assert get_task("nanodet").to_dict()["options"] == {"threshold": 0.35}
    row = next(line for line in readme_table().splitlines() if line.startswith("| `nanodet`"))
    assert "score threshold 0.35" in row
    with open(f"{ROOT}/README.md", encoding="utf-8") as f:
        assert row in f.read()


@pytest.fixture(scope="module")
def attached(tmp_path_factory):
    d = tmp_path_factory.mktemp("thr")
    nvp = copy_nvp(encode_tiny(d, frames=4, epochs=5), d)
    attach(nvp, "nanodet", weights="random-tiny", top_k=0.2, epochs=1, sample_frames=4)
    return nvp


def _scores(report):
    return [p["score"] for f in report["tasks"]["nanodet"]["frames"] for p in f["predictions"]]


def test_infer_uses_the_task_threshold_unless_given(attached):
    default = infer(attached, ["nanodet"], frames=(0, 2), device="cpu")
    same = infer(attached, ["nanodet"], frames=(0, 2), device="cpu", threshold=0.35)
    loose = infer(attached, ["nanodet"], frames=(0, 2), device="cpu", threshold=0.0)
    assert default["threshold"] is None and default["tasks"]["nanodet"]["threshold"] == 0.35
    assert loose["tasks"]["nanodet"]["threshold"] == 0.0
    assert default["tasks"]["nanodet"]["frames"] == same["tasks"]["nanodet"]["frames"]
    assert _scores(default) and all(s > 0.35 for s in _scores(default))
    assert len(_scores(loose)) >= len(_scores(default))
    top = max(_scores(default))
    assert _scores(infer(attached, ["nanodet"], frames=(0, 2), device="cpu", threshold=top)) == []


def test_cli_infer_threshold_default_and_override(attached):
    def run(*extra):
        proc = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", attached, "--task", "nanodet", "--frames",
                               "0:1", "--device", "cpu", "--json", *extra], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["tasks"]["nanodet"]

    assert run()["threshold"] == 0.35
    assert run("--threshold", "0.9")["threshold"] == 0.9
    bad = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", attached, "--task", "nanodet", "--threshold",
                          "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--threshold" in bad.stderr and "Traceback" not in bad.stderr
