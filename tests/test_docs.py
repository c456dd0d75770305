"""Numbers stated in the README and in `--help` match the code, so documentation cannot drift silently."""

import inspect
import os
import re

import click
import pytest

from conftest import ROOT
from nvcodec.codec.encode import EncodeOptions
from nvcodec.tasks import attach as attach_mod
from nvcodec.tasks.adapter import ADAPTER_KINDS
from nvcodec_cli.main import app

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def _defaults(fn):
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect.Parameter.empty}


def _cli_defaults(command):
    return {p.name: p.default for p in app.commands[command].params}


def test_attach_cli_defaults_equal_the_library_defaults():
    lib, cli = _defaults(attach_mod.attach), _cli_defaults("attach")
    for name in ("search", "top_k", "epochs", "distill", "max_cost"):
        assert cli[name] == lib[name], name
    assert tuple(cli["kinds"].split(",")) == tuple(lib["kinds"]) == attach_mod.DEFAULT_KINDS
    assert set(attach_mod.DEFAULT_KINDS) <= set(ADAPTER_KINDS)


def test_encode_cli_defaults_equal_the_library_defaults():
    lib, cli = _defaults(EncodeOptions), _cli_defaults("encode")
    for name in ("kind", "psnr", "loss", "seed"):
        assert cli[name] == lib[name], name
    unset = (None, getattr(click.core, "UNSET", None))
    for name in ("weight_bits", "embed_bits", "qat", "bit_alloc"):  # None: the kind's preset (encode.KIND_PRESETS)
        assert lib[name] is None and cli[name] in unset, name


def test_attach_help_numbers_match_the_code():
    helps = {p.name: p.help or "" for p in app.commands["attach"].params}
    sample = attach_mod.DEFAULT_SAMPLE
    assert f"{sample['classification']} for classification, {sample['detection']} for detection" in helps["sample"]
    assert f"floor ({attach_mod.FIDELITY_FLOOR})" in helps["strict"]


@pytest.mark.parametrize("phrase, value", [
    (r"\((\d+) for classification", attach_mod.DEFAULT_SAMPLE["classification"]),
    (r"(\d+) for detection; a quarter\s+held out", attach_mod.DEFAULT_SAMPLE["detection"]),
    (r"`--max-cost` \(([\d.]+)\)", attach_mod.MAX_COST),
    (r"stays within ([\d.]+)% of the backbone's parameters", attach_mod.MAX_ADAPTER_PCT),
    (r"near-ties \(within\s+([\d.]+)\)", attach_mod.TIE),
    (r"below the floor of ([\d.]+)", attach_mod.FIDELITY_FLOOR),
    (r"`--distill` \(([\d.]+)\)", attach_mod.DISTILL_WEIGHT),
    (r"lowers held-out fidelity by at most\s+([\d.]+)", attach_mod.QUANT_TOLERANCE),
    (r"`--top-k` pairs to train \(default (\d+)%\)", 100 * _defaults(attach_mod.attach)["top_k"]),
])
def test_readme_attach_numbers_match_the_code(phrase, value):
    m = re.search(phrase, README)
    assert m, f"README no longer says {phrase!r}"
    assert float(m.group(1)) == pytest.approx(float(value))


def test_readme_quarter_held_out_matches_the_code():
    assert attach_mod.HOLDOUT_FRACTION == 0.25 and re.search(r"a quarter\s+held out", README)
