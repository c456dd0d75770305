"""Clip tasks (SlowFast R50, I3D R50): architecture, weights, windows, attach and infer end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nvcodec.tasks.infer

from nvcodec.codec.meta import read_routing
from nvcodec.codec.video import NvpVideo
from nvcodec.container import NvpReader
from nvcodec.errors import FormatError, UsageError, WeightsError
from nvcodec.tasks.adapter import MicroAdapter
from nvcodec.tasks.attach import attach
from nvcodec.tasks.clips import ClipAdapter, plan_windows, sample_windows, union_frames, window_frames
from nvcodec.tasks.infer import infer
from nvcodec.tasks.registry import get_task, task_names
from nvcodec.tasks.video_resnet import SlowFast, i3d_r50, slowfast_r50, tiny_i3d, tiny_slowfast
from nvcodec.tasks.weights import resolve_weights

from conftest import encode_tiny, synthetic_frames, write_clip

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = "random-tiny"
CLIP_TASKS = ("slowfast_r50", "i3d_r50")


def _expected_keys(name: str) -> dict[str, list[int]]:
    out = {}
    for line in (FIXTURES / f"pytorchvideo_{name}_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        out[key] = json.loads(shape)
    return out


@pytest.mark.parametrize("name,build", [("i3d_r50", i3d_r50), ("slowfast_r50", slowfast_r50)])
def test_state_dict_keys_and_shapes_match_pytorchvideo(name, build):
    model = build()
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected_keys(name)


def _unsplit(model, clip):
    """pytorchvideo's ``Net.forward``: the blocks in order on the clip (SlowFast: [slow, fast])."""
    x = [clip[:, :, :: model.alpha], clip] if isinstance(model, SlowFast) else clip
    for block in model.blocks:
        x = block(x)
    return x


@pytest.mark.parametrize("build", [tiny_i3d, tiny_slowfast])
def test_split_forward_equals_unsplit_forward(build):
    torch.manual_seed(0)
    model = build().eval()
    for m in model.modules():  # non-trivial BN statistics, so every normalization matters
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    clip = torch.randn(2, 3, model.clip_len, 64, 64)
    with torch.no_grad():
        ref = _unsplit(model, clip)
        assert torch.allclose(model(clip), ref, atol=1e-5)
        acts, raw = model.forward_all(clip)
        assert torch.allclose(raw, ref, atol=1e-5)
        for p in model.injection_points:
            act = model.forward_to(clip, p)
            assert len(act) == len(model.pathways)
            assert [a.shape[1] for a in act] == model.pathway_channels(p)
            assert [a.shape[2] for a in act] == [len(pos) for pos in model.pathway_positions(p)]
            assert all(tuple(a.shape[-2:]) == model.point_size(p, (64, 64)) for a in act)
            assert torch.allclose(model.forward_from(act, p), ref, atol=1e-5)


def test_slowfast_pathways_sample_the_clip():
    m = tiny_slowfast()
    assert m.pathway_positions("stem") == [[0, 4], list(range(8))]
    i3d = tiny_i3d()
    assert i3d.pathway_positions("res2") == [[0, 1, 2, 3]] and i3d.pathway_positions("res3") == [[0, 2]]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.mark.parametrize("task,name", [("i3d_r50", "I3D_8x8_R50.pyth"), ("slowfast_r50", "SLOWFAST_8x8_R50.pyth")])
def test_weights_missing_then_found_in_torch_hub_cache(caches, task, name):
    with pytest.raises(WeightsError) as err:
        resolve_weights(task, None)
    assert str(caches / name) in str(err.value) and err.value.exit_code == 5
    caches.mkdir(parents=True)
    (caches / name).write_bytes(b"")
    found = resolve_weights(task, None)
    assert found.kind == "file" and found.path == caches / name


@pytest.mark.parametrize("task,build", [("i3d_r50", tiny_i3d), ("slowfast_r50", tiny_slowfast)])
def test_pyth_checkpoint_with_model_state_loads(tmp_path, task, build):
    torch.manual_seed(1)
    ref = build().eval()
    path = tmp_path / "ckpt.pyth"
    torch.save({"model_state": ref.state_dict(), "epoch": 196}, path)
    spec = get_task(task)
    model = spec.build(spec.resolve_weights(str(path)), tiny=True)
    clip = torch.randn(1, 3, ref.clip_len, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(clip), ref(clip))
    with pytest.raises(WeightsError, match="does not fit"):
        spec.build(spec.resolve_weights(str(path)))  # a tiny checkpoint is not the R50


def test_windows_plan_and_sampling():
    assert window_frames(10, 64, 8) == [10, 18, 26, 34, 42, 50, 58, 66]
    assert plan_windows(0, 20, 4, 8, 4) == [[0, 2, 4, 6], [4, 6, 8, 10], [8, 10, 12, 14], [12, 14, 16, 18]]
    assert plan_windows(0, 6, 4, 64) == [[0, 1, 3, 4]]  # shorter range: one window over it
    assert union_frames(plan_windows(0, 20, 4, 8, 4)) == list(range(0, 20, 2))
    assert [w[0] for w in sample_windows(0, 100, 8, 64, 3)] == [0, 18, 36]
    with pytest.raises(UsageError):
        plan_windows(0, 20, 4, 0)
    with pytest.raises(UsageError):
        plan_windows(0, 20, 4, 8, 0)


def test_clip_adapter_roundtrip_and_bad_pathways():
    ads = [MicroAdapter(4, 6, (3, 3)), MicroAdapter(4, 2, (3, 3))]
    ca = ClipAdapter(ads, [[0, 2], [0, 1, 2, 3]], 4, ["slow", "fast"])
    feat = torch.randn(8, 4, 5, 5)
    out = ca(feat)
    assert [tuple(o.shape) for o in out] == [(2, 6, 2, 3, 3), (2, 2, 4, 3, 3)]
    assert torch.allclose(out[0][1, :, 1], ads[0](feat[6:7])[0], atol=1e-6)
    back = ClipAdapter.from_arrays(ca.to_arrays(), ["slow", "fast"], [(3, 3)] * 2, ca.positions, 4, "linear")
    assert all(torch.allclose(a, b) for a, b in zip(back(feat), out))
    with pytest.raises(UsageError, match="no pathway"):
        ClipAdapter.from_arrays(ca.to_arrays(), ["slow"], [(3, 3)], [[0, 2]], 4, "linear")


@pytest.fixture(scope="module")
def base_nvp(tmp_path_factory):
    return encode_tiny(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def attached(base_nvp, tmp_path_factory):
    p = str(tmp_path_factory.mktemp("att") / "both.nvp")
    shutil.copy(base_nvp, p)
    reports = {t: attach(p, t, weights=TINY, top_k=0.2, epochs=2) for t in CLIP_TASKS}
    return p, reports


def test_tasks_listed():
    assert set(CLIP_TASKS) <= set(task_names())
    for t in CLIP_TASKS:
        d = get_task(t).to_dict()
        assert d["clip"]["window"] == 64 and len(get_task(t).labels) == 400


def test_attach_clip_tasks_records_pathways(attached):
    path, reports = attached
    with NvpReader(path) as r:
        routing = read_routing(r)
        names = [s.name for s in r.sections]
    for task, rep in reports.items():
        assert rep["weights_random"] and 0 < rep["fidelity"] <= 1 and rep["trained_adapters"] >= 1
        assert 0 < rep["gflops"] < rep["pixel_path_gflops"]
        entry = routing["tasks"][task]
        want = ["slow", "fast"] if task == "slowfast_r50" else ["main"]
        assert [q["name"] for q in entry["pathways"]] == want
        assert entry["distill"] == 0.0 and entry["clip"]["frames"] == (8 if task == "slowfast_r50" else 4)
        assert f"adapter/{task}" in names


def test_infer_clip_tasks_per_window_with_pixel_agreement(attached):
    path, _ = attached
    r = infer(path, list(CLIP_TASKS), compare_pixels=True, window=4, stride=2)
    for task in CLIP_TASKS:
        t = r["tasks"][task]
        assert t["unit"] == "window" and "frames" not in t
        assert [w["window"] for w in t["windows"]] == [[0, 4], [2, 6], [4, 8]]
        assert all(len(w["predictions"]) == 5 for w in t["windows"])
        assert t["agreement"]["frames"] == 3 and 0 <= t["agreement"]["top1_agreement"] <= 1
        assert t["gflops"]["adapter_path"] < t["gflops"]["pixel_path"]
        assert t["clip"]["decoded_frames"] < t["clip"]["window_frames"]
    assert r["sharing"]["tasks"] == list(CLIP_TASKS)


def test_windows_sharing_frames_decode_each_frame_once(attached, monkeypatch):
    path, _ = attached
    seen: list[int] = []
    real = NvpVideo.inputs

    def counting(self, seg, indices, device, upto):
        seen.extend(indices)
        return real(self, seg, indices, device, upto)

    monkeypatch.setattr(NvpVideo, "inputs", counting)
    real_build = nvcodec.tasks.infer.build_runtime

    def build(*args, **kwargs):  # a random backbone's BN calibration decodes its sample first: not counted
        rt = real_build(*args, **kwargs)
        seen.clear()
        return rt

    monkeypatch.setattr("nvcodec.tasks.infer.build_runtime", build)
    monkeypatch.setattr("nvcodec.tasks.infer.task_gflops", lambda video, t, dev: {"adapter_path": 0.0})
    r = infer(path, ["i3d_r50"], window=6, stride=1)
    t = r["tasks"]["i3d_r50"]
    windows = [w["frames"] for w in t["windows"]]
    assert len(windows) == 3 and sum(len(w) for w in windows) == 12
    assert sorted(seen) == union_frames(windows)  # every needed frame decoded exactly once


@pytest.mark.parametrize("tolerance, bits", [(1.0, 8), (-1.0, 16)])
def test_clip_adapters_are_stored_8_bit_when_that_costs_no_fidelity(base_nvp, tmp_path, monkeypatch, tolerance,
                                                                     bits):
    import nvcodec.tasks.attach as mod

    monkeypatch.setattr(mod, "QUANT_TOLERANCE", tolerance)
    p = str(tmp_path / "q.nvp")
    shutil.copy(base_nvp, p)
    r = attach(p, "slowfast_r50", weights=TINY, top_k=0.2, epochs=1)
    with NvpReader(p) as rd:
        entry = read_routing(rd)["tasks"]["slowfast_r50"]
        bundle = rd.read_tensors(entry["adapter_sections"][0])
    assert r["chosen"]["adapter_bits"] == entry["adapter_bits"] == bundle.meta["bits"] == bits
    weights = [n for n in bundle.tensors if n.endswith("conv.weight")]
    assert len(weights) == 2 and all(bundle.tensors[n].dtype == ("uint8" if bits == 8 else "float16")
                                     for n in weights)
    assert infer(p, ["slowfast_r50"], window=8)["tasks"]["slowfast_r50"]["windows"]


def test_infer_bad_window_is_a_usage_error(attached):
    with pytest.raises(UsageError):
        infer(attached[0], ["i3d_r50"], window=4, stride=0)


def test_cli_infer_clip_task(attached):
    path, _ = attached
    out = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", path, "--task", "slowfast_r50",
                          "--window", "8", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)["tasks"]["slowfast_r50"]
    assert [w["window"] for w in t["windows"]] == [[0, 8]]
    bad = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", path, "--task", "i3d_r50",
                          "--window", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_tampered_pathway_list_is_a_format_error(attached, tmp_path):
    from nvcodec.container import Section, SectionKind, append_nvp, pack_tensors

    p = str(tmp_path / "t.nvp")
    shutil.copy(attached[0], p)
    with NvpReader(p) as r:
        bundle = r.read_tensors("adapter/slowfast_r50")
    meta = dict(bundle.meta, pathways=[{"name": "fast"}, {"name": "slow"}])
    append_nvp(p, [Section("adapter/slowfast_r50", SectionKind.ADAPTER, pack_tensors(bundle.tensors, meta=meta))])
    with pytest.raises(FormatError, match="pathways"):
        infer(p, ["slowfast_r50"])


def test_bench_runs_clip_tasks_with_shared_prefix(tmp_path):
    from nvcodec.bench.run import BenchOptions, run_bench

    clip = write_clip(str(tmp_path / "b.mp4"), synthetic_frames(8, 32, 48))
    opts = dict(params=5e3, epochs=3, bpps=[], codecs=["x264"], weights=TINY, repeat=1, warmup=0,
                attach_epochs=2, random_access=2, device="cpu")
    r = run_bench(clip, BenchOptions(tasks=list(CLIP_TASKS), **opts))
    assert r["tasks"]["slowfast_r50"]["window_frames"] == [list(range(8))]
    assert r["tasks"]["i3d_r50"]["window_frames"] == [[0, 2, 4, 6]]
    for t in r["tasks"].values():
        assert t["unit"] == "window"
        g = {k: p["gflops"] for k, p in t["paths"].items()}
        assert 0 < g["nvcodec"]["total"] < g["inr_pixels"]["total"]
        assert g["codec"]["backbone"] == g["inr_pixels"]["backbone"]
    assert r["multi_task"]["tasks"] == list(CLIP_TASKS)
    with pytest.raises(UsageError, match="mixes"):
        run_bench(clip, BenchOptions(tasks=["resnet50", "i3d_r50"], **opts))


def test_tune_refits_a_clip_task_and_refuses_to_tune_one(base_nvp, tmp_path):
    from nvcodec.tasks.tune import tune

    p = str(tmp_path / "t.nvp")
    shutil.copy(base_nvp, p)
    attach(p, "efficientnet_lite0", weights=TINY, top_k=1, epochs=1, kinds=["linear"])
    attach(p, "i3d_r50", weights=TINY, top_k=1, epochs=1, kinds=["linear"])
    r = tune(p, "efficientnet_lite0", epochs=1)
    assert set(r["refitted_tasks"]) == {"i3d_r50"} and 0 < r["refitted_tasks"]["i3d_r50"] <= 1
    assert infer(p, ["i3d_r50"])["tasks"]["i3d_r50"]["windows"]
    with pytest.raises(UsageError, match="clip"):
        tune(p, "i3d_r50", epochs=1)
