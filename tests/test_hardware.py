"""The TASD paper's six accelerators and the prior structured-sparse baselines, by name:
the patterns and series each runs, one-pass execution, aliases (tasd_jax/cost/hardware.py,
docs/tasd.md#the-accelerators)."""

import dataclasses
import itertools
import re

import numpy as np
import pytest

from configs import edp_bert, edp_resnet50
from tasd_jax import cost, patterns

# The paper's representative layers (docs/tasd.md): ResNet-50 784-128-1152, 3136-64-576,
# 196-256-2304 and BERT's projections and feed-forward layers at 128 tokens, as (m, k, n).
GEMMS = [
    cost.GEMM("res_784x128x1152", 784, 1152, 128),
    cost.GEMM("res_3136x64x576", 3136, 576, 64),
    cost.GEMM("res_196x256x2304", 196, 2304, 256),
    cost.GEMM("bert_qkv", 128, 768, 768),
    cost.GEMM("bert_ffn_up", 128, 768, 3072),
    cost.GEMM("bert_ffn_down", 128, 3072, 768),
]

M4, M8 = {(1, 4), (2, 4)}, {(1, 8), (2, 8), (4, 8)}
MODES = {
    "tc": set(),
    "ttc_stc_m4": {(2, 4)},
    "ttc_stc_m8": {(4, 8)},
    "ttc_vegeta_m4": M4,
    "ttc_vegeta_m8": M8,
    "stc": {(2, 4)},
    "vegeta": M4,
    "vegeta_m8": M4 | M8,
    "ttc": M4 | M8,
}
CANDIDATES = {
    "tc": ("dense",),
    "dstc": ("dense",),
    "ttc_stc_m4": ("2:4", "dense"),
    "ttc_stc_m8": ("4:8", "dense"),
    "ttc_vegeta_m4": ("1:4", "2:4", "2:4+1:4", "dense"),
    "ttc_vegeta_m8": ("1:8", "2:8", "2:8+1:8", "4:8", "4:8+1:8", "4:8+2:8", "dense"),
    "stc": ("2:4", "dense"),
    "vegeta": ("1:4", "2:4", "2:4+1:4", "dense"),
    "vegeta_m8": (
        "1:8", "1:4", "2:8", "2:8+1:8", "2:4", "4:8", "4:8+1:8", "2:4+1:4", "4:8+2:8", "dense",
    ),
}
TTC_DESIGNS = ("ttc_stc_m4", "ttc_stc_m8", "ttc_vegeta_m4", "ttc_vegeta_m8")
# Each TTC and the prior design with the same patterns that runs a series term after term.
PRIOR_OF = {"ttc_stc_m4": "stc", "ttc_vegeta_m4": "vegeta", "ttc_vegeta_m8": "vegeta_m8"}


def test_paper_designs_exist_with_their_patterns():
    assert cost.PAPER_DESIGNS == (
        "tc", "dstc", "ttc_stc_m4", "ttc_stc_m8", "ttc_vegeta_m4", "ttc_vegeta_m8"
    )
    assert cost.PRIOR_DESIGNS == ("stc", "vegeta", "vegeta_m8")
    designs = cost.hardware_names(aliases=False)
    assert set(cost.PAPER_DESIGNS) | set(cost.PRIOR_DESIGNS) | {"ttc"} == set(designs)
    assert "dense" not in designs and "dense" in cost.hardware_names()
    for name, modes in MODES.items():
        hw = cost.hardware(name)
        assert hw.name == name
        assert hw.weight_modes == hw.activation_modes == modes, name
        assert not hw.unstructured and hw.sparse_operands == 1
    dstc = cost.hardware("dstc")
    assert dstc.unstructured and dstc.sparse_operands == 2
    assert dstc.runs("2:4+1:8") and dstc.runs("7:8")  # any series only lowers the density
    assert "TTC-VEGETA-M8" in cost.hardware("ttc_vegeta_m8").description


@pytest.mark.parametrize("name", sorted(CANDIDATES))
@pytest.mark.parametrize("operand", ["weight", "activation"])
def test_candidate_series(name, operand):
    hw = cost.hardware(name)
    got = hw.candidate_series(operand)
    assert got == CANDIDATES[name]
    assert all(hw.runs(s, operand) for s in got)
    assert all(patterns.as_series(s).canonical == s for s in got)
    with pytest.raises(ValueError, match="operand 'bias'"):
        hw.candidate_series("bias")


def _probes():
    """Every N:M term with M in 4, 8, and every sum of two or three of them."""
    singles = [f"{n}:{m}" for m in (4, 8) for n in range(1, m + 1)]
    pairs = ["+".join(p) for p in itertools.product(singles, repeat=2)]
    triples = ["2:8+1:8+1:8", "4:8+2:8+1:8", "2:4+1:4+1:4", "1:4+1:4+1:4"]
    return ["dense"] + singles + pairs + triples


@pytest.mark.parametrize("name", ["tc", *TTC_DESIGNS])
@pytest.mark.parametrize("operand", ["weight", "activation"])
def test_fixed_designs_run_exactly_their_candidates(name, operand):
    hw = cost.hardware(name)
    assert hw.listed_series_only
    candidates = set(hw.candidate_series(operand))
    for spec in _probes():
        assert hw.runs(spec, operand) == (patterns.as_series(spec).canonical in candidates), spec


@pytest.mark.parametrize("name", cost.PRIOR_DESIGNS + ("ttc",))
def test_prior_designs_run_any_sum_of_their_modes(name):
    hw = cost.hardware(name)
    assert not hw.listed_series_only
    for spec in _probes():
        terms = [tuple(map(int, t.split(":"))) for t in spec.split("+")] if spec != "dense" else []
        want = all(n == m or (n, m) in MODES[name] for n, m in terms)
        assert hw.runs(spec) == want, spec


@pytest.mark.parametrize("operand", ["weight", "activation"])
@pytest.mark.parametrize("series", ["7:8", "3:8", "2:8+1:8+1:8", "1:8+1:8", "2:4"])
def test_ttc_vegeta_m8_rejects_what_it_does_not_run(operand, series):
    hw = cost.hardware("ttc_vegeta_m8")
    assert not hw.runs(series, operand)
    want = re.escape(f"hardware 'ttc_vegeta_m8' cannot run {operand} series '{series}'")
    with pytest.raises(ValueError, match=want):
        cost.estimate(GEMMS, "ttc_vegeta_m8", **{f"{operand}_series": series})
    assert hw.runs("8:8", operand) and patterns.as_series("8:8").canonical == "dense"


def test_ttc_designs_are_one_pass_and_the_prior_ones_are_not():
    for name in TTC_DESIGNS + ("ttc",):
        assert cost.hardware(name).one_pass, name
    for name in cost.PRIOR_DESIGNS + ("tc", "dstc"):
        assert not cost.hardware(name).one_pass, name


@pytest.mark.parametrize("name", sorted(CANDIDATES))
@pytest.mark.parametrize("operand", ["weight", "activation"])
def test_every_candidate_estimates_least_compute_first(name, operand):
    hw = cost.hardware(name)
    compute = []
    for spec in hw.candidate_series(operand):
        est = cost.estimate(GEMMS, hw, **{f"{operand}_series": spec})
        assert np.all(np.isfinite(est.cycles)) and np.all(est.cycles > 0)
        assert np.all(np.isfinite(est.energy_pj)) and est.total_edp > 0
        compute.append(est.executed_macs)
    # Every k above is a multiple of 8, so the MACs run follow sum Ni/Mi: never decreasing.
    assert all(np.all(b >= a) for a, b in zip(compute, compute[1:]))


@pytest.mark.parametrize("ttc_name", sorted(PRIOR_OF))
@pytest.mark.parametrize("operand", ["weight", "activation"])
def test_one_pass_series_beats_the_prior_design(ttc_name, operand):
    ttc, prior = cost.hardware(ttc_name), cost.hardware(PRIOR_OF[ttc_name])
    for spec in ttc.candidate_series(operand):
        assert prior.runs(spec, operand)
        one = cost.estimate(GEMMS, ttc, **{f"{operand}_series": spec})
        multi = cost.estimate(GEMMS, prior, **{f"{operand}_series": spec})
        np.testing.assert_array_equal(one.executed_macs, multi.executed_macs)  # same work
        assert np.all(one.edp <= multi.edp * (1 + 1e-9)), spec
        # Two terms in one pass, or an activation decomposed as it loads rather than
        # in a pass of its own: fewer cycles. A single weight term, or dense, costs the same.
        if "+" in spec or (operand == "activation" and spec != "dense"):
            assert one.total_edp < multi.total_edp, spec
        else:
            np.testing.assert_allclose(one.cycles, multi.cycles)
            np.testing.assert_allclose(one.energy_pj, multi.energy_pj)
        if "+" in spec:
            assert one.total_edp < multi.total_edp, spec


def test_aliases_resolve():
    assert cost.hardware_aliases() == {"dense": "tc"}
    assert cost.design_name("dense") == "tc" and cost.design_name("tc") == "tc"
    dense = cost.hardware("dense", energy="horowitz45")
    tc = cost.hardware("tc", energy="horowitz45")
    assert dense.name == "dense" and "alias of 'tc'" in dense.description
    assert dataclasses.replace(dense, name="tc", description=tc.description) == tc
    # The paper's spelling names the same design.
    assert cost.hardware("TTC-VEGETA-M8") == cost.hardware("ttc_vegeta_m8")
    assert cost.design_name("TTC-STC-M4") == "ttc_stc_m4"
    # The names used before the paper's (dense, stc, vegeta, vegeta_m8, dstc, ttc) all resolve.
    for old in ("dense", "stc", "vegeta", "vegeta_m8", "dstc", "ttc"):
        assert cost.hardware(old).name == old
    with pytest.raises(ValueError, match=r"unknown hardware 'tpu'.*'ttc_vegeta_m8'"):
        cost.design_name("tpu")


def test_hardware_series_must_be_canonical_sums_of_its_modes():
    with pytest.raises(ValueError, match="not one of its modes"):
        cost.Hardware(name="bad", description="", weight_modes=frozenset(M4), series=("2:8+1:8",))
    with pytest.raises(ValueError, match="canonical spec of two or more terms"):
        cost.Hardware(name="bad", description="", weight_modes=frozenset(M8), series=("2:8",))
    with pytest.raises(ValueError, match="canonical spec of two or more terms"):
        cost.Hardware(name="bad", description="", weight_modes=frozenset(M8), series=("2:8 + 1:8",))


@pytest.mark.parametrize("config_module", [edp_resnet50, edp_bert])
def test_edp_configs_name_the_paper_designs_and_their_candidates(config_module):
    config = config_module.get_config()
    assert tuple(config.hardware) == cost.PAPER_DESIGNS + cost.PRIOR_DESIGNS
    assert cost.design_name(config.hardware[0]) == "tc"  # the reference
    candidates = {s for h in config.hardware for s in cost.hardware(h).candidate_series()}
    assert set(config.series) == candidates
    assert all(patterns.as_series(s).canonical == s for s in config.series)
