"""attach / infer end to end on a tiny encoded clip with tiny random backbones."""

import json
import os
import subprocess
import sys

import pytest
import torch

import nvcodec
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.container import NvpReader
from nvcodec.errors import NotAttachedError, UsageError
from nvcodec.tasks.attach import attach
from nvcodec.tasks.infer import infer

from conftest import copy_nvp, encode_tiny, synthetic_frames, write_clip

TINY = "random-tiny"


@pytest.fixture(scope="module")
def base_nvp(tmp_path_factory):
    return encode_tiny(tmp_path_factory.mktemp("tasks"))


@pytest.fixture
def nvp(base_nvp, tmp_path):
    return copy_nvp(base_nvp, tmp_path)


def _inr_bytes(path):
    with NvpReader(path) as r:
        return {s.name: r.read(s.name) for s in r.sections
                if s.name.startswith(("block/", "head", "embeddings", "model", "video"))}


def test_attach_appends_and_keeps_inr_byte_identical(nvp):
    before_bytes = open(nvp, "rb").read()
    before = _inr_bytes(nvp)
    r = attach(nvp, "resnet50", weights=TINY, top_k=0.5, epochs=3)
    for key in ("task", "candidates", "chosen", "fidelity", "adapter_params", "adapter_params_pct", "seconds"):
        assert key in r
    assert r["weights_random"] is True
    assert all({"inr_layer", "injection_point", "cka"} <= set(c) for c in r["candidates"])
    assert r["trained_pairs"] >= 1 and 0 < r["adapter_params_pct"] < 100
    after = open(nvp, "rb").read()
    assert after[:len(before_bytes) - 64] == before_bytes[:len(before_bytes) - 64]
    assert _inr_bytes(nvp) == before
    with NvpReader(nvp) as rd:
        infos_before = {s.name: (s.offset, s.crc32) for s in rd.sections if s.name in before}
    r2 = attach(nvp, "resnet50", weights=TINY, top_k=1, epochs=2)
    with NvpReader(nvp) as rd:
        names = [s.name for s in rd.sections]
        assert names.count("adapter/resnet50") == 1 and names.count("routing") == 1
        assert {s.name: (s.offset, s.crc32) for s in rd.sections if s.name in before} == infos_before
    assert r2["trained_pairs"] == 1


def test_infer_classification_and_pixel_agreement(nvp):
    attach(nvp, "resnet50", weights=TINY, top_k=0.3, epochs=3)
    r = infer(nvp, ["resnet50"], frames=(0, 3), compare_pixels=True)
    t = r["tasks"]["resnet50"]
    assert [f["frame"] for f in t["frames"]] == [0, 1, 2]
    assert len(t["frames"][0]["predictions"]) == 5
    assert set(t["timing_ms"]) >= {"decode", "adapter", "backbone", "head", "total"}
    assert all(v >= 0 for v in t["timing_ms"].values()) and t["timing_ms"]["total"] > 0
    assert t["gflops"]["adapter_path"] > 0 and t["gflops"]["pixel_path"] > 0
    assert 0 <= t["agreement"]["top1_agreement"] <= 1 and t["agreement"]["mean_kl"] >= 0
    assert "random" in t["note"]


def test_python_api_parity(nvp):
    with nvcodec.open(nvp) as v:
        v.attach("resnet50", weights=TINY, top_k=0.2, epochs=2)
        r = v.infer("resnet50", frames=(1, 2))
    assert r["tasks"]["resnet50"]["frames"][0]["frame"] == 1


def test_infer_reuses_a_built_backbone_only_for_the_same_weights_and_calibration(nvp, monkeypatch):
    from nvcodec.tasks import registry, runtime

    attach(nvp, "resnet50", weights=TINY, top_k=0.2, epochs=2)
    spec = registry.get_task("resnet50")
    builds = []
    real = type(spec).build

    def counting(self, *a, **kw):
        builds.append(self.name)
        return real(self, *a, **kw)

    monkeypatch.setattr(type(spec), "build", counting)
    first = infer(nvp, ["resnet50"], frames=(0, 2))
    again = infer(nvp, ["resnet50"], frames=(0, 2))
    assert len(builds) == 1
    assert first["tasks"]["resnet50"]["frames"] == again["tasks"]["resnet50"]["frames"]
    calib = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    for frames in (calib, calib + 1):
        runtime.build_runtime("resnet50", TINY, torch.device("cpu"), 16, 16, calibration_frames=frames, reuse=True)
    assert len(builds) == 3
    runtime.build_runtime("resnet50", TINY, torch.device("cpu"), 16, 16, calibration_frames=calib + 1, reuse=True)
    runtime.build_runtime("resnet50", TINY, torch.device("cpu"), 16, 16, calibration_frames=calib + 1)
    assert len(builds) == 4
    runtime.clear_backbone_cache()
    infer(nvp, ["resnet50"], frames=(0, 2))
    assert len(builds) == 5


def test_detection_boxes_in_frame_coordinates(nvp):
    attach(nvp, "detr", weights=TINY, top_k=0.2, epochs=2, sample_frames=4)
    r = infer(nvp, ["detr"], frames=(0, 2), threshold=0.0, compare_pixels=True)
    t = r["tasks"]["detr"]
    boxes = [p["box"] for f in t["frames"] for p in f["predictions"]]
    assert boxes
    for x0, y0, x1, y1 in boxes:
        assert -1 <= x0 <= x1 <= 65 and -1 <= y0 <= y1 <= 41
    assert "map50" in t["agreement"]


def test_decode_prefix_runs_each_block_once(base_nvp):
    from nvcodec.tasks.infer import Clock, decode_prefix

    with nvcodec.open(base_nvp) as v:
        seg = v.segments[0]
        dec, _ = v.decoder(seg, None, torch.device("cpu"))
        x = v.inputs(seg, [0, 1], torch.device("cpu"), None)
        runs = []
        hooks = [b.register_forward_hook(lambda m, i, o: runs.append(m)) for b in dec.blocks]
        layers = [0, v.num_layers - 1]
        got = {k: f for k, f, _ in decode_prefix(dec, x, layers, Clock(torch.device("cpu")))}
        for h in hooks:
            h.remove()
        assert len(runs) == v.num_layers
        for k in layers:
            assert torch.equal(got[k], dec.features(x, k))


def test_multi_task_shares_prefix(nvp, monkeypatch):
    import nvcodec.tasks.infer as mod

    attach(nvp, "resnet50", weights=TINY, top_k=0.2, epochs=2)
    attach(nvp, "detr", weights=TINY, top_k=0.2, epochs=2, sample_frames=4)
    seen = []
    orig = mod.decode_prefix

    def spy(dec, x_in, layers, clock):
        seen.append(list(layers))
        yield from orig(dec, x_in, layers, clock)

    monkeypatch.setattr(mod, "decode_prefix", spy)
    r = infer(nvp, ["resnet50", "detr"], frames=(0, 2), compare_pixels=False)
    layers = sorted({t["inr_layer"] for t in r["tasks"].values()})
    assert seen == [layers]
    sh = r["sharing"]
    assert sh["shared_gflops"] <= sh["separate_gflops"]
    assert sh["shared_decode_ms"] > 0 and sh["separate_decode_ms"] > 0


def test_errors(nvp):
    with pytest.raises(NotAttachedError, match="attach"):
        infer(nvp, ["resnet50"])
    with pytest.raises(UsageError, match="resnet50"):
        attach(nvp, "no-such-task", weights=TINY)
    attach(nvp, "resnet50", weights=TINY, top_k=0.1, epochs=1)
    with pytest.raises(UsageError):
        infer(nvp, ["resnet50"], frames=(5, 50))


def test_attach_killed_midway_keeps_previous_content(nvp, monkeypatch):
    import nvcodec.tasks.attach as mod

    before = open(nvp, "rb").read()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "fit_adapter", boom)
    with pytest.raises(KeyboardInterrupt):
        attach(nvp, "resnet50", weights=TINY, epochs=1)
    assert open(nvp, "rb").read() == before


def test_cli_attach_infer_json(nvp):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "attach", nvp, "--task", "resnet50", "--weights", TINY,
                        "--epochs", "2", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["task"] == "resnet50" and r["weights_random"]
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", nvp, "--task", "resnet50", "--frames", "0:2",
                        "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["tasks"]["resnet50"]["weights_random"]
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", nvp, "--task", "detr"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 6 and "attach" in p.stderr and "Traceback" not in p.stderr


def test_encode_with_tasks_attaches_right_after(tmp_path):
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(4, 32, 48))
    out = str(tmp_path / "c.nvp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "encode", clip, out, "--params", "5k", "--epochs", "3",
                        "--device", "cpu", "--tasks", "resnet50", "--weights", TINY, "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["tasks"][0]["task"] == "resnet50" and s["tasks"][0]["weights_random"]
    with NvpReader(out) as r:
        assert "routing" in r and "adapter/resnet50" in r
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "encode", clip, str(tmp_path / "x.nvp"), "--tasks", "nope"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "resnet50" in p.stderr and not os.path.exists(tmp_path / "x.nvp")


def test_segmented_file_gets_one_adapter_per_segment(tmp_path):
    clip = write_clip(str(tmp_path / "s.mp4"), synthetic_frames(5, 32, 48))
    out = str(tmp_path / "s.nvp")
    encode(clip, out, EncodeOptions(psnr=None, epochs=3, params=6000, device="cpu", segment_frames=4))
    r = attach(out, "resnet50", weights=TINY, top_k=0.2, epochs=2)
    assert r["segments"] == 2
    with NvpReader(out) as rd:
        assert {"adapter/resnet50/seg0", "adapter/resnet50/seg1"} <= {s.name for s in rd.sections}
    res = infer(out, ["resnet50"])
    assert [f["frame"] for f in res["tasks"]["resnet50"]["frames"]] == [0, 1, 2, 3, 4]


def test_efficientnet_lite0_attach_infer_with_source_teacher(nvp, tmp_path):
    clip = write_clip(str(tmp_path / "orig.mp4"), synthetic_frames(8, 40, 64))
    r = attach(nvp, "efficientnet_lite0", weights=TINY, top_k=2, epochs=2, source=clip, kinds=["linear", "patch"])
    assert r["teacher"] == "source" and r["chosen"]["adapter_kind"] in ("linear", "patch")
    assert r["trained_pairs"] == 2 and r["trained_adapters"] >= 2
    assert all("lstsq_fidelity" in c for c in r["candidates"])
    with NvpReader(nvp) as rd:
        from nvcodec.codec.meta import read_routing

        entry = read_routing(rd)["tasks"]["efficientnet_lite0"]
        assert entry["adapter_kind"] == r["chosen"]["adapter_kind"] and entry["teacher"] == "source"
        assert rd.read_tensors("adapter/efficientnet_lite0").meta["kind"] == entry["adapter_kind"]
    out = infer(nvp, ["efficientnet_lite0"], compare_pixels=True, source=clip)
    t = out["tasks"]["efficientnet_lite0"]
    for key in ("agreement", "agreement_source", "pixel_agreement_source"):
        assert {"top1_agreement", "top5_overlap", "mean_kl", "constant_label_share"} <= set(t[key])
    with pytest.raises(UsageError):
        attach(nvp, "efficientnet_lite0", weights=TINY, search="nope")
    with pytest.raises(UsageError):
        attach(nvp, "efficientnet_lite0", weights=TINY, kinds=["mlp"])


def test_search_modes_choose_what_gets_trained(nvp):
    cka = attach(nvp, "efficientnet_lite0", weights=TINY, top_k=1, epochs=1, search="cka", kinds=["linear"],
                 max_cost=0)
    best_cka = max(cka["candidates"], key=lambda c: c["cka"])
    assert [c for c in cka["candidates"] if c["trained"]] == [best_cka]
    ls = attach(nvp, "efficientnet_lite0", weights=TINY, top_k=1, epochs=1, kinds=["linear"], max_cost=0)
    best_ls = max(ls["candidates"], key=lambda c: c["lstsq_fidelity"])
    assert [c for c in ls["candidates"] if c["trained"]] == [best_ls]
    ex = attach(nvp, "efficientnet_lite0", weights=TINY, epochs=0, search="exhaustive", kinds=["linear"])
    assert ex["trained_pairs"] == ex["total_pairs"] == len(ex["candidates"])


def test_cost_cap_limits_the_pairs_ranked_and_trained(nvp):
    full = attach(nvp, "efficientnet_lite0", weights=TINY, epochs=0, search="exhaustive", kinds=["linear"], max_cost=0)
    pixel = full["pixel_path_gflops"]
    assert full["pairs_within_cost"] == full["trained_pairs"] == full["total_pairs"]
    assert pixel == pytest.approx(infer(nvp, ["efficientnet_lite0"], frames=(0, 1))["tasks"]["efficientnet_lite0"]
                                  ["gflops"]["pixel_path"], rel=1e-6)
    costs = sorted(c["gflops_estimate"] for c in full["candidates"])
    cap = costs[len(costs) // 2] / pixel
    capped = attach(nvp, "efficientnet_lite0", weights=TINY, epochs=0, search="exhaustive", kinds=["linear"],
                    max_cost=cap)
    assert 0 < capped["pairs_within_cost"] < capped["trained_pairs"] == capped["total_pairs"]  # exhaustive: all
    assert all(c["gflops"] == pytest.approx(c["gflops_estimate"]) for c in capped["candidates"])  # linear
    assert capped["gflops"] <= cap * pixel
    top = attach(nvp, "efficientnet_lite0", weights=TINY, epochs=0, top_k=3, kinds=["linear"], max_cost=cap)
    trained = [c for c in top["candidates"] if c["trained"]]
    assert len(trained) == 3 and all(c["gflops_estimate"] <= cap * pixel for c in trained)
    within = [c for c in top["candidates"] if c["gflops_estimate"] <= cap * pixel]
    assert trained == within[:3]  # the best-ranked pairs among those within the cap
    none_fit = attach(nvp, "efficientnet_lite0", weights=TINY, epochs=0, search="exhaustive", kinds=["linear"],
                      max_cost=1e-9)
    assert none_fit["pairs_within_cost"] == 0 and none_fit["trained_pairs"] == none_fit["total_pairs"]
    from nvcodec_cli.render import render_attach
    assert "skipped" in render_attach(capped) and "cap not applied" in render_attach(none_fit)
    with pytest.raises(UsageError):
        attach(nvp, "efficientnet_lite0", weights=TINY, epochs=0, max_cost=-1)


def test_old_linear_adapter_without_kind_still_reads(nvp):
    from nvcodec.container import Section, SectionKind, append_nvp, pack_tensors

    attach(nvp, "efficientnet_lite0", weights=TINY, top_k=1, epochs=1, kinds=["linear"])
    with NvpReader(nvp) as rd:
        bundle = rd.read_tensors("adapter/efficientnet_lite0")
    meta = {k: v for k, v in bundle.meta.items() if k != "kind"}
    append_nvp(nvp, [Section("adapter/efficientnet_lite0", SectionKind.ADAPTER, pack_tensors(bundle.tensors, meta=meta))])
    assert infer(nvp, ["efficientnet_lite0"], frames=(0, 2))["tasks"]["efficientnet_lite0"]["frames"]


def test_concurrent_attaches_keep_every_task(nvp):
    code = ("import sys; from nvcodec.tasks.attach import attach; "
            "attach(sys.argv[1], sys.argv[2], weights='random-tiny', top_k=1, epochs=1, kinds=['linear'])")
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", code, nvp, t], stderr=subprocess.PIPE)
                 for t in ("efficientnet_lite0", "resnet50", "detr")]
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read().decode()
        with NvpReader(nvp) as rd:
            from nvcodec.codec.meta import read_routing

            assert set(read_routing(rd)["tasks"]) == {"efficientnet_lite0", "resnet50", "detr"}
    out = infer(nvp, ["efficientnet_lite0", "resnet50", "detr"], frames=(0, 2))
    assert set(out["tasks"]) == {"efficientnet_lite0", "resnet50", "detr"}


def test_tune_keeps_rate_refits_other_tasks_and_compacts(nvp, tmp_path):
    from nvcodec.container import compact_nvp, verify_nvp
    from nvcodec.tasks.tune import tune

    clip = write_clip(str(tmp_path / "orig.mp4"), synthetic_frames(8, 40, 64))
    attach(nvp, "efficientnet_lite0", weights=TINY, top_k=1, epochs=1, kinds=["linear"])
    attach(nvp, "resnet50", weights=TINY, top_k=1, epochs=1)
    before = _inr_bytes(nvp)
    with NvpReader(nvp) as rd:
        gen0 = rd.generation
        sizes0 = {s.name: s.raw_length for s in rd.sections if s.name.startswith(("block/", "embeddings", "head"))}
    r = tune(nvp, "efficientnet_lite0", source=clip, epochs=2, inr_lr=1e-3)
    assert r["reference"] == "source" and set(r["refitted_tasks"]) == {"resnet50"}
    assert {"psnr_before", "psnr_after", "fidelity_before", "fidelity_after"} <= set(r)
    with NvpReader(nvp) as rd:
        assert rd.generation == gen0 + 1
        assert {s.name: s.raw_length for s in rd.sections if s.name in sizes0} == sizes0
        from nvcodec.codec.meta import read_provenance, read_routing

        assert read_routing(rd)["tasks"]["efficientnet_lite0"]["tuned"]["psnr_after"] == r["psnr_after"]
        assert read_provenance(rd)["tune"][-1]["task"] == "efficientnet_lite0"
    assert _inr_bytes(nvp) != before
    out = infer(nvp, ["efficientnet_lite0", "resnet50"], frames=(0, 2), compare_pixels=True)
    assert set(out["tasks"]) == {"efficientnet_lite0", "resnet50"}
    size = os.path.getsize(nvp)
    c = compact_nvp(nvp)
    assert c["bytes_before"] == size and c["bytes_after"] < size == c["bytes_before"]
    assert verify_nvp(nvp)["generation"] == 1
    assert infer(nvp, ["resnet50"], frames=(0, 2))["tasks"]["resnet50"]["frames"]
    with pytest.raises(NotAttachedError):
        tune(nvp, "detr", epochs=1)


def test_cli_tune_and_compact(nvp):
    attach(nvp, "efficientnet_lite0", weights=TINY, top_k=1, epochs=1, kinds=["linear"])
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "tune", nvp, "--task", "efficientnet_lite0",
                        "--epochs", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["reference"] == "inr" and r["task"] == "efficientnet_lite0"
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "compact", nvp, "--json"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)["bytes_after"] < json.loads(p.stdout)["bytes_before"]
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "tune", nvp, "--task", "detr"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 6 and "attach" in p.stderr and "Traceback" not in p.stderr


def test_quality_warnings_floor_and_degenerate_cka():
    from nvcodec.tasks.attach import FIDELITY_FLOOR, Candidate, quality_warnings

    good = [Candidate(0, "stem", 0.4, 0.8), Candidate(1, "layer1", 0.0, 0.7)]
    assert quality_warnings(good, 0.9) == []
    (w,) = quality_warnings(good, FIDELITY_FLOOR - 0.01)
    assert "below the floor" in w
    flat = [Candidate(0, "stem", 0.0, 0.8), Candidate(1, "layer1", 1e-9, 0.7)]
    (w,) = quality_warnings(flat, 0.9)
    assert "CKA is 0 for every pair" in w


def test_attach_strict_refuses_below_the_floor_and_appends_nothing(nvp, monkeypatch):
    import nvcodec.tasks.attach as mod
    from nvcodec.errors import LowFidelityError

    monkeypatch.setattr(mod, "FIDELITY_FLOOR", 1.01)
    before = open(nvp, "rb").read()
    with pytest.raises(LowFidelityError, match="not attached"):
        attach(nvp, "resnet50", weights=TINY, top_k=1, epochs=1, strict=True)
    assert open(nvp, "rb").read() == before
    r = attach(nvp, "resnet50", weights=TINY, top_k=1, epochs=1)
    assert r["warnings"] and "below the floor" in r["warnings"][0] and r["fidelity_floor"] == 1.01


def test_cli_attach_strict_on_a_constant_video(tmp_path):
    import numpy as np

    frames = np.full((6, 32, 48, 3), 90, np.uint8)
    clip = write_clip(str(tmp_path / "flat.mp4"), frames)
    out = str(tmp_path / "flat.nvp")
    # hnerv: equal frames give equal embeddings, so its decoded frames and features are exactly constant (a
    # hinerv fit's time-sampled grids vary over the clip until it has converged to the flat frame).
    encode(clip, out, EncodeOptions(psnr=None, epochs=3, params=4000, device="cpu", seed=0, kind="hnerv"))
    before = open(out, "rb").read()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "nvcodec_cli.main", "attach", out, "--task", "resnet50", "--weights", TINY,
           "--epochs", "1", "--top-k", "1"]
    p = subprocess.run(cmd + ["--strict"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1 and "CKA is 0 for every pair" in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("nvcodec: error:")
    assert open(out, "rb").read() == before
    p = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "nvcodec: warning: CKA is 0" in p.stderr
    assert json.loads(p.stdout)["warnings"]


@pytest.mark.parametrize("tolerance, bits", [(1.0, 8), (-1.0, 16)])
def test_attach_stores_8_bit_adapters_when_they_cost_no_fidelity(nvp, monkeypatch, tolerance, bits):
    import nvcodec.tasks.attach as mod
    from nvcodec.codec.meta import read_routing

    monkeypatch.setattr(mod, "QUANT_TOLERANCE", tolerance)
    r = attach(nvp, "resnet50", weights=TINY, top_k=1, epochs=1)
    assert r["chosen"]["adapter_bits"] == bits
    with NvpReader(nvp) as rd:
        entry = read_routing(rd)["tasks"]["resnet50"]
        bundle = rd.read_tensors(entry["adapter_sections"][0])
    assert entry["adapter_bits"] == bits and bundle.meta["bits"] == bits
    assert bundle.tensors["conv.weight"].dtype == ("uint8" if bits == 8 else "float16")
    assert infer(nvp, ["resnet50"], frames=(0, 2))["tasks"]["resnet50"]["frames"]
