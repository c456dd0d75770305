"""vit_b16 and blip_caption: split forward equals transformers' forward; attach/infer on a tiny clip."""

import json
import os
import subprocess
import sys

import pytest
import torch

from nvcodec.errors import UsageError, WeightsError
from nvcodec.tasks import caption
from nvcodec.tasks.agreement import caption_agreement, corpus_bleu, token_agreement
from nvcodec.tasks.attach import attach
from nvcodec.tasks.blip import build_blip, clean_generated
from nvcodec.tasks.infer import infer
from nvcodec.tasks.registry import get_task
from nvcodec.tasks.tokens import map_to_tokens, tokens_to_map
from nvcodec.tasks.vit import build_vit
from nvcodec.tasks.weights import WeightsSource, resolve_weights

from conftest import copy_nvp, encode_tiny

TINY = "random-tiny"


def _tiny(task):
    torch.manual_seed(0)
    build = build_vit if task == "vit_b16" else build_blip
    return build(WeightsSource(task, "random"), tiny=True)


def test_registered():
    for name, kind in (("vit_b16", "classification"), ("blip_caption", "caption")):
        spec = get_task(name)
        assert spec.output_type == kind and spec.injection_points == ("embed", "block3", "block6", "block9")
        assert spec.to_dict()["output_schema"]["fields"]


def test_token_map_round_trip():
    pos = torch.randn(1, 1 + 12, 8)
    hidden = torch.randn(2, 13, 8)
    m = tokens_to_map(hidden, pos, (3, 4))
    assert m.shape == (2, 16, 3, 4)
    assert torch.allclose(map_to_tokens(m, pos), hidden, atol=1e-6)
    with pytest.raises(UsageError):
        map_to_tokens(m[:, :, :2], pos)


def test_vit_split_equals_transformers_forward():
    model = _tiny("vit_b16")
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        ref = model.vit(pixel_values=x).logits
        assert torch.allclose(model(x), ref, atol=1e-5)
        for p in model.injection_points:
            act = model.forward_to(x, p)
            assert act.shape[1] == model.point_channels(p) and tuple(act.shape[-2:]) == model.point_size(p, (224, 224))
            assert torch.allclose(model.forward_from(act, p), ref, atol=1e-5), p
        # The class token really comes through the map: changing it changes the output.
        act = model.forward_to(x, "block6")
        act[:, 16:] += torch.randn(1, 16, 1, 1)  # not a constant shift, which LayerNorm would undo
        assert not torch.allclose(model.forward_from(act, "block6"), ref, atol=1e-3)


@pytest.mark.parametrize("beams", [1, 3])
def test_blip_split_equals_transformers_generate(beams):
    model = _tiny("blip_caption")
    model.set_decoding(beams)
    x = torch.randn(3, 3, 384, 384)
    with torch.no_grad():
        lib = model.blip.generate(pixel_values=x, num_beams=beams, max_new_tokens=model.max_tokens)
        tc = model.blip.config.text_config
        expected = clean_generated(lib[:, 1:], tc.sep_token_id, model.max_tokens)
        ref = model(x)
        assert torch.equal(ref["tokens"], expected)
        if beams == 1:  # greedy captions of the tiny model depend on the image
            assert len({tuple(r) for r in ref["tokens"].tolist()}) > 1
        inputs = torch.cat([torch.full_like(expected[:, :1], tc.bos_token_id), expected[:, :-1].clamp(min=0)], 1)
        mask = torch.cat([torch.ones_like(expected[:, :1]), (expected[:, :-1] >= 0).long()], 1)
        lib_logits = model.blip(pixel_values=x, input_ids=inputs, attention_mask=mask).logits
        assert torch.allclose(ref["logits"], lib_logits, atol=1e-5)
        for p in model.injection_points:
            out = model.forward_from(model.forward_to(x, p), p)
            assert torch.equal(out["tokens"], ref["tokens"]), p
            assert torch.allclose(out["logits"], ref["logits"], atol=1e-5), p
        forced = model.forward_from(model.forward_to(x, "block3"), "block3", tokens=ref["tokens"])
        assert torch.allclose(forced["logits"], ref["logits"], atol=1e-5)
        assert caption.distill(forced, ref).abs().item() < 1e-6
    with pytest.raises(UsageError):
        model.set_decoding(0)


def test_caption_fidelity_and_bleu():
    a = torch.tensor([[5, 6, 7, 3, -1], [8, 9, -1, -1, -1]])
    assert caption.fidelity({"tokens": a, "logits": torch.zeros(2, 5, 10)}, {"tokens": a, "logits": torch.zeros(2, 5, 10)}) == 1.0
    b = torch.tensor([[5, 6, 4, 3, -1], [9, 8, -1, -1, -1]])
    ag = caption_agreement(b, a)
    assert ag["token_agreement"] == pytest.approx(0.5 * 3 / 4)
    assert 0 < ag["bleu4"] < 1 and ag["exact_match"] == 0.0
    assert token_agreement([[]], [[]]) == 1.0 and corpus_bleu([[]], [[1, 2]]) == 0.0
    assert corpus_bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5, 6, 7]]) < corpus_bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5, 6]])


def test_weights_missing_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for task, repo in (("vit_b16", "google--vit-base-patch16-224"), ("blip_caption", "Salesforce--blip-image-captioning-base")):
        with pytest.raises(WeightsError) as e:
            resolve_weights(task, None, cache_dirs=[tmp_path])
        assert repo in str(e.value) and "skipped: offline" in str(e.value)


def test_blip_snapshot_without_tokenizer_is_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--Salesforce--blip-image-captioning-base"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    with pytest.raises(WeightsError, match="incomplete snapshot"):
        resolve_weights("blip_caption", None, cache_dirs=[tmp_path])


def test_vit_state_dict_file_round_trip(tmp_path):
    model = _tiny("vit_b16")
    path = tmp_path / "vit.pth"
    torch.save({f"module.{k}": v for k, v in model.vit.state_dict().items()}, path)
    torch.manual_seed(1)
    loaded = build_vit(WeightsSource("vit_b16", "file", path), tiny=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    published = (("vit.layers.", "vit.encoder.layer."), (".attention.q_proj.", ".attention.attention.query."),
                 (".attention.k_proj.", ".attention.attention.key."), (".attention.v_proj.", ".attention.attention.value."),
                 (".attention.o_proj.", ".attention.output.dense."), (".mlp.fc1.", ".intermediate.dense."),
                 (".mlp.fc2.", ".output.dense."))
    old = {}
    for k, v in model.vit.state_dict().items():
        for new, before in published:
            k = k.replace(new, before)
        old[k] = v
    assert "vit.encoder.layer.0.attention.attention.query.weight" in old
    torch.save(old, path)
    with torch.no_grad():
        assert torch.equal(build_vit(WeightsSource("vit_b16", "file", path), tiny=True)(x), model(x))
    torch.save({"classifier.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsError, match="missing keys"):
        build_vit(WeightsSource("vit_b16", "file", path), tiny=True)


@pytest.fixture(scope="module")
def base_nvp(tmp_path_factory):
    return encode_tiny(tmp_path_factory.mktemp("token_tasks"), frames=6, epochs=8, params=6000)


@pytest.fixture
def nvp(base_nvp, tmp_path):
    return copy_nvp(base_nvp, tmp_path)


def test_vit_attach_infer(nvp):
    r = attach(nvp, "vit_b16", weights=TINY, top_k=0.2, epochs=2, sample_frames=6)
    assert r["chosen"]["injection_point"] in get_task("vit_b16").injection_points and r["weights_random"]
    out = infer(nvp, ["vit_b16"], frames=(0, 3), compare_pixels=True)
    t = out["tasks"]["vit_b16"]
    assert len(t["frames"]) == 3 and len(t["frames"][0]["predictions"]) == 5
    assert 0 <= t["agreement"]["top1_agreement"] <= 1 and t["gflops"]["adapter_path"] > 0


def test_blip_attach_infer_and_cli(nvp):
    r = attach(nvp, "blip_caption", weights=TINY, top_k=0.2, epochs=2, sample_frames=6, kinds=("linear",))
    assert 0 <= r["fidelity"] <= 1 and r["adapter_val"]["task_loss"] >= 0
    out = infer(nvp, ["blip_caption"], frames=(0, 3), compare_pixels=True, beams=2)
    t = out["tasks"]["blip_caption"]
    assert t["output_type"] == "caption" and len(t["frames"]) == 3
    pred = t["frames"][0]["predictions"]
    assert len(pred) == 1 and isinstance(pred[0]["caption"], str) and all(i >= 0 for i in pred[0]["tokens"])
    ag = t["agreement"]
    assert {"token_agreement", "bleu4", "exact_match", "fidelity"} <= set(ag) and 0 <= ag["bleu4"] <= 1
    assert t["gflops"]["backbone_tail"] > 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", nvp, "--task", "blip_caption", "--frames",
                        "0:2", "--compare-pixels"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "frame 0: '" in p.stdout and "bleu4" in p.stdout
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "infer", nvp, "--task", "blip_caption", "--beams",
                        "0", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "--beams" in p.stderr and "Traceback" not in p.stderr


def test_caption_and_classification_share_prefix(nvp):
    attach(nvp, "vit_b16", weights=TINY, top_k=0.1, epochs=1, sample_frames=4)
    attach(nvp, "blip_caption", weights=TINY, top_k=0.1, epochs=1, sample_frames=4, kinds=("linear",))
    r = infer(nvp, ["vit_b16", "blip_caption"], frames=(0, 2))
    assert set(r["tasks"]) == {"vit_b16", "blip_caption"}
    assert json.dumps(r)
