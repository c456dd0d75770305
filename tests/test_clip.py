"""clip_rn50: CLIP RN50 architecture and keys, BPE tokenizer, weights lookup, zero-shot attach / infer."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.errors import UsageError, WeightsError
from nvcodec.tasks import clip as clipmod
from nvcodec.tasks.attach import attach
from nvcodec.tasks.bpe import ClipTokenizer, base_tokenizer, load_tokenizer, read_merges
from nvcodec.tasks.clip import ClipRN50, build_clip, clip_state_dict, find_vocab, tiny_clip
from nvcodec.tasks.infer import infer
from nvcodec.tasks.labels import read_labels
from nvcodec.tasks.registry import get_task
from nvcodec.tasks.weights import Search, WeightsSource, resolve_weights

from conftest import ROOT, synthetic_frames, write_clip

TINY = "random-tiny"
KEYS = os.path.join(ROOT, "fixtures", "clip_rn50_keys.txt")
MERGES = ["p h", "ph o", "pho t", "phot o</w>", "o f</w>", "c a", "ca t</w>"]


def _published_keys():
    out = {}
    with open(KEYS, encoding="utf-8") as f:
        for line in f:
            key, shape = line.split(" ")
            shape = shape.strip()
            out[key] = tuple(int(d) for d in shape.split(",")) if shape else ()
    return out


def _vocab_file(path, merges=MERGES):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(["#version: 0.2", *merges]) + "\n")
    return path


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    m = build_clip(WeightsSource("clip_rn50", "random"), tiny=True)
    m.set_labels(["cat", "dog", "red car", "tree"])
    return m


def test_state_dict_keys_and_shapes_equal_the_published_rn50():
    ours = {k: tuple(v.shape) for k, v in ClipRN50().state_dict().items()}
    assert ours == _published_keys()
    assert len(ours) == 489


def test_split_forward_equals_unsplit_forward(tiny):
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        prompts = [f"a photo of a {label}." for label in tiny.labels]
        text = F.normalize(tiny.encode_text(tiny.tokenizer.tokenize(prompts)), dim=-1)
        expected = tiny.logit_scale.exp() * F.normalize(tiny.visual(x), dim=-1) @ text.t()
        assert torch.allclose(tiny(x), expected, atol=1e-5)
        for point in tiny.injection_points:
            act = tiny.forward_to(x, point)
            assert act.shape[1] == tiny.point_channels(point)
            assert tuple(act.shape[-2:]) == tiny.point_size(point, (224, 224))
            assert torch.allclose(tiny.forward_from(act, point), expected, atol=1e-5)
    assert [tiny.point_stride(p) for p in tiny.injection_points] == [4, 4, 8, 16]


def test_text_cut_after_end_token_equals_full_context(tiny):
    tokens = tiny.tokenizer.tokenize(["a photo of a cat.", "a photo of a very long label indeed."])
    with torch.no_grad():
        x = tiny.token_embedding(tokens) + tiny.positional_embedding
        mask = torch.full((77, 77), float("-inf")).triu(1)
        x = tiny.ln_final(tiny.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2))
        eot = (tokens == tiny.tokenizer.eot_id).int().argmax(-1)
        full = x[torch.arange(2), eot] @ tiny.text_projection
        assert torch.allclose(tiny.encode_text(tokens), full, atol=1e-5)


def test_label_set_embedded_once_and_in_order(tiny, monkeypatch):
    calls = []
    orig = tiny.encode_text
    monkeypatch.setattr(tiny, "encode_text", lambda t: calls.append(len(t)) or orig(t))
    first = tiny.label_features.clone()
    tiny.set_labels(["cat", "dog", "red car", "tree"])
    assert calls == [] and torch.equal(tiny.label_features, first)
    tiny.set_labels(["tree", "cat"])
    assert calls == [2]
    assert torch.allclose(tiny.label_features, first[[3, 0]], atol=1e-6)
    torch.manual_seed(0)
    again = build_clip(WeightsSource("clip_rn50", "random"), tiny=True)
    orig_again = again.encode_text
    monkeypatch.setattr(again, "encode_text", lambda t: calls.append(len(t)) or orig_again(t))
    again.set_labels(["tree", "cat"])
    assert calls == [2], "same weights, same labels: embedded once"
    with torch.no_grad():
        again.token_embedding.weight[0, 0] += 1
    again.set_labels(["tree", "cat"])
    assert calls == [2, 2], "other weights: embedded again"
    with pytest.raises(UsageError):
        tiny.set_labels([])


def test_tokenizer_merges_and_layout(tmp_path):
    tok = load_tokenizer(_vocab_file(tmp_path / "v.txt.gz"))
    assert tok.vocab_size == 512 + len(MERGES) + 2
    enc = tok.encoder
    assert tok.encode("A  Photo of &amp; cat.") == [enc["a</w>"], enc["photo</w>"], enc["of</w>"],
                                                   enc["&</w>"], enc["cat</w>"], enc[".</w>"]]
    row = tok.tokenize(["a cat"], context_length=6)[0].tolist()
    assert row == [tok.sot_id, enc["a</w>"], enc["cat</w>"], tok.eot_id, 0, 0]
    cut = tok.tokenize(["a cat a cat a cat"], context_length=4)[0].tolist()
    assert cut == [tok.sot_id, enc["a</w>"], enc["cat</w>"], tok.eot_id]
    assert base_tokenizer().encode("ab") == [base_tokenizer().encoder["a"], base_tokenizer().encoder["b</w>"]]


def test_tokenizer_agrees_with_transformers_clip_tokenizer(tmp_path):
    from transformers import CLIPTokenizer

    tok = load_tokenizer(_vocab_file(tmp_path / "v.txt.gz"))
    (tmp_path / "vocab.json").write_text(json.dumps(tok.encoder), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n", encoding="utf-8")
    hf = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in ["a photo of a cat.", "Photo of 3 cats, it's a dog!", "café naïve x-ray"]:
        ids = tok.tokenize([text])[0]
        assert ids[ids != 0].tolist() == hf(text)["input_ids"], text


def test_bad_vocab_files(tmp_path):
    bad = tmp_path / "bad.txt.gz"
    _vocab_file(bad, ["a b c"])
    with pytest.raises(WeightsError, match="line 2"):
        read_merges(bad)
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(WeightsError, match="cannot read"):
        read_merges(tmp_path / "junk.gz")
    with pytest.raises(WeightsError, match="merges"):
        ClipTokenizer([("a", "b")] * 50_000)
    with pytest.raises(WeightsError, match="twice"):
        ClipTokenizer([("a", "b"), ("a", "b")])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_open_clip_layout_loads_and_torchscript_is_refused(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    ref = tiny_clip()
    sd = {f"module.{k}": v.clone() for k, v in ref.state_dict().items()}
    sd.update({k: torch.tensor(224) for k in clipmod.EXTRA_KEYS})
    assert set(clip_state_dict(sd, set(ref.state_dict()))) == set(ref.state_dict())
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "open_clip_model.safetensors"))
    got = build_clip(WeightsSource("clip_rn50", "file", tmp_path / "open_clip_model.safetensors"), tiny=True)
    assert all(torch.equal(got.state_dict()[k], v) for k, v in ref.state_dict().items())

    ts = tmp_path / "RN50.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(ts))
    assert clipmod.is_torchscript(ts)
    with pytest.raises(WeightsError, match="TorchScript"):
        build_clip(WeightsSource("clip_rn50", "file", ts), tiny=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_lookup_places(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError) as err:
        resolve_weights("clip_rn50", None, cache_dirs=[empty], allow_download=False)
    assert err.value.exit_code == 5
    assert str(empty / "RN50.pt") in str(err.value) and "models--timm--resnet50_clip.openai" in str(err.value)
    ts = tmp_path / "RN50.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(ts))
    search = Search()
    assert clipmod.locate_clip_rn50(search, [tmp_path], None, None) is None
    assert any("TorchScript" in t for t in search.tried)
    snap = tmp_path / "hub" / "models--timm--resnet50_clip.openai" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("c" * 40)
    (snap / "model.safetensors").write_bytes(b"timm layout, not this model")
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"x")
    found = resolve_weights("clip_rn50", None, cache_dirs=[tmp_path], allow_download=False)
    assert found.path == snap / "open_clip_pytorch_model.bin"

    monkeypatch.setattr(clipmod, "OPENAI_CACHE", tmp_path / "no-cache")
    monkeypatch.setattr(clipmod, "VOCAB_PACKAGES", ())
    path, looked = find_vocab(found)
    assert path is None and str(snap / "bpe_simple_vocab_16e6.txt.gz") in looked
    _vocab_file(snap / "bpe_simple_vocab_16e6.txt.gz")
    assert find_vocab(found)[0] == snap / "bpe_simple_vocab_16e6.txt.gz"


def test_read_labels_and_fixed_label_tasks(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("\ufeffcat\n\n  red car \ndog\n", encoding="utf-8")
    assert read_labels(f) == ("cat", "red car", "dog")
    for content, match in [(b"\n \n", "no label"), (b"\xff\xfe\x00", "UTF-8"), (b"x" * 301, "longer")]:
        f.write_bytes(content)
        with pytest.raises(UsageError, match=match):
            read_labels(f)
    with pytest.raises(UsageError, match="cannot read"):
        read_labels(tmp_path / "missing.txt")
    with pytest.raises(UsageError, match="fixed label set"):
        get_task("resnet50").with_labels(["cat"])
    assert get_task("clip_rn50").zero_shot and get_task("clip_rn50").with_labels(["a"]).labels == ("a",)


@pytest.fixture(scope="module")
def clip_nvp(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    clip = write_clip(str(d / "c.mp4"), synthetic_frames(6, 40, 64))
    out = str(d / "c.nvp")
    encode(clip, out, EncodeOptions(psnr=None, epochs=10, params=6000, device="cpu", seed=0))
    attach(out, "clip_rn50", weights=TINY, top_k=0.2, epochs=2, sample_frames=4)
    return out


def test_attach_and_infer_zero_shot(clip_nvp, tmp_path):
    r = infer(clip_nvp, ["clip_rn50"], frames=(0, 3), compare_pixels=True)
    t = r["tasks"]["clip_rn50"]
    assert [f["frame"] for f in t["frames"]] == [0, 1, 2]
    preds = t["frames"][0]["predictions"]
    assert len(preds) == 5 and all(p["label"] == get_task("clip_rn50").labels[p["index"]] for p in preds)
    assert t["injection_point"] in ("stem", "layer1", "layer2", "layer3")
    assert 0 <= t["agreement"]["top1_agreement"] <= 1 and t["gflops"]["pixel_path"] > t["gflops"]["adapter_path"] > 0
    assert "random" in t["note"]
    r = infer(clip_nvp, ["clip_rn50"], frames=(0, 2), compare_pixels=True, labels=["cat", "dog", "red car"])
    preds = r["tasks"]["clip_rn50"]["frames"][1]["predictions"]
    assert sorted(p["label"] for p in preds) == ["cat", "dog", "red car"]
    assert abs(sum(p["score"] for p in preds) - 1) < 1e-4
    with pytest.raises(UsageError, match="zero-shot"):
        infer(clip_nvp, ["resnet50"], labels=["cat"])


def test_cli_labels_file(clip_nvp, tmp_path):
    nvp = str(tmp_path / "t.nvp")
    shutil.copy(clip_nvp, nvp)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NVCODEC_DEBUG": ""}
    cmd = [sys.executable, "-m", "nvcodec_cli.main", "infer", nvp, "--task", "clip_rn50", "--frames", "0:1"]
    p = subprocess.run(cmd + ["--labels", str(labels), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    preds = json.loads(p.stdout)["tasks"]["clip_rn50"]["frames"][0]["predictions"]
    assert {x["label"] for x in preds} == {"cat", "dog"}
    labels.write_bytes(b"")
    p = subprocess.run(cmd + ["--labels", str(labels)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "no label" in p.stderr and "Traceback" not in p.stderr
