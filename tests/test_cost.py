"""Tests of tasd_jax.cost (GEMM extraction, hardware data, the EDP model) and the EDP experiment."""

import csv
import json
import math
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import edp_report as report
from tasd_jax import cost, models, patterns

# --------------------------------------------------------------------------- gemms_of


class _Tiny(nn.Module):
    """Every GEMM kind once; the expected shapes are worked out by hand in the test."""

    @nn.compact
    def __call__(self, x):  # x: [2, 8, 8, 3]
        x = nn.Conv(8, (3, 3), strides=2, padding="SAME", name="conv")(x)  # [2, 4, 4, 8]
        x = nn.Conv(6, (1, 1), feature_group_count=2, name="grouped")(x)  # [2, 4, 4, 6]
        x = x.reshape(2, 16, 6)
        q = nn.Dense(4, name="q")(x)  # [2, 16, 4]
        scores = jnp.einsum("bqd,bkd->bqk", q, q)  # batch 2: [16, 4] @ [4, 16]
        w = self.param("left", nn.initializers.ones, (5, 16))
        y = jnp.einsum("ok,bkd->bod", w, scores)  # W @ x: weight on the left
        return y


def _expected_tiny():
    return [
        # conv: m = 2 images * 4 * 4 outputs, k = 3 * 3 * 3, n = 8
        ("Tiny/conv", 32, 27, 8, 1, True, "params/conv/kernel"),
        # grouped conv, 2 groups: k = 1 * 1 * 8 / 2, n = 6 / 2
        ("Tiny/grouped", 32, 4, 3, 2, True, "params/grouped/kernel"),
        # dense on [2, 16, 6]: m = 32, k = 6, n = 4
        ("Tiny/q", 32, 6, 4, 1, True, "params/q/kernel"),
        # attention scores: batch 2 of [16, 4] @ [4, 16]
        (None, 16, 4, 16, 2, False, None),
        # W[5, 16] @ scores[b, 16, 16]: turned round, B = W^T: m = 2 * 16, k = 16, n = 5
        (None, 32, 16, 5, 1, True, "params/left"),
    ]


@pytest.mark.parametrize("jit", [False, True])
def test_gemms_of_tiny_model_shapes_by_hand(jit):
    model = _Tiny()
    x = jnp.ones((2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    fn = jax.jit(model.apply) if jit else model.apply  # jit: GEMMs inside a pjit
    gemms = cost.gemms_of(fn, variables, x)
    assert len(gemms) == 5
    for g, (name, m, k, n, batch, weight, path) in zip(gemms, _expected_tiny()):
        assert (g.m, g.k, g.n, g.batch, g.weight, g.weight_path) == (m, k, n, batch, weight, path), g
        if name is not None:
            assert g.name.endswith(name), g.name
    assert cost.total_macs(gemms) == 32 * 27 * 8 + 2 * 32 * 4 * 3 + 32 * 6 * 4 + 2 * 16 * 4 * 16 + 32 * 16 * 5
    assert len({g.name for g in gemms}) == len(gemms)


def test_gemms_of_scan_remat_cond_custom_jvp():
    w = jnp.ones((8, 8))

    @jax.custom_jvp
    def f(x):
        return x @ w

    f.defjvp(lambda primals, tangents: (f(*primals), tangents[0] @ w))

    def fn(params, x):
        x = jax.checkpoint(lambda y: y @ params["a"])(x)  # [4, 8] @ [8, 8]
        x, _ = jax.lax.scan(lambda c, _: (c @ params["a"], None), x, None, length=3)
        x = jax.lax.cond(x.sum() > 0, lambda y: y @ params["big"] @ params["big"].T, lambda y: y, x)
        return f(x)

    params = {"a": jnp.ones((8, 8)), "big": jnp.ones((8, 32))}
    gemms = cost.gemms_of(fn, params, jnp.ones((4, 8)))
    shapes = [(g.m, g.k, g.n, g.batch, g.weight) for g in gemms]
    assert shapes == [
        (4, 8, 8, 1, True),  # remat
        (4, 8, 8, 3, True),  # scan body, length 3
        (4, 8, 32, 1, True),  # cond: the branch with GEMMs
        (4, 32, 8, 1, True),
        (4, 8, 8, 1, True),  # custom_jvp (w is a closed-over constant, not data)
    ]
    assert gemms[0].weight_path == "a" and gemms[2].weight_path == "big"


def test_gemms_of_bad_params_argnums():
    with pytest.raises(ValueError, match="params_argnums"):
        cost.gemms_of(lambda a: a @ a, jnp.ones((2, 2)), params_argnums=(3,))


def _gemms(name, input_shape):
    model, variables = models.init_model(name, input_shape, seed=None)
    return report.workload(name, model, variables, input_shape).gemms


def test_resnet50_and_bert_mac_totals():
    r50 = _gemms("resnet50", (1, 224, 224, 3))
    assert len(r50) == 54  # 53 convolutions and the classifier
    macs = cost.total_macs(r50)
    assert macs == 4_089_184_256  # torchvision's 4.09 GMACs (~4.1 G multiply-adds published)
    assert sum(g.op == "conv" for g in r50) == 53
    for seq in (128, 384):
        bert = _gemms("bert", (1, seq))
        assert len(bert) == 12 * 8 + 2
        h, ff, heads = 768, 3072, 12
        per_layer = 4 * seq * h * h + 2 * seq * h * ff + 2 * heads * seq * seq * (h // heads)
        assert cost.total_macs(bert) == 12 * per_layer + h * h + h * 2  # + pooler + classifier
        attention = [g for g in bert if not g.weight]
        assert len(attention) == 24 and all(g.batch == heads for g in attention)


# --------------------------------------------------------------------------- hardware


def test_hardware_registry_and_errors():
    assert {"dense", "stc", "vegeta", "dstc", "ttc"} <= set(cost.hardware_names())
    with pytest.raises(ValueError, match=r"unknown hardware 'tpu'.*'dense'.*'stc'"):
        cost.hardware("tpu")
    with pytest.raises(ValueError, match="unknown energy table 'x'.*horowitz45"):
        cost.hardware("stc", energy="x")
    hw = cost.hardware("stc", energy="horowitz45")
    assert hw.energy.mac_pj == pytest.approx(0.23)  # Horowitz int8 mult 0.2 + add 0.03
    # 256 KB interpolated log-log between 32 KB (20 pJ) and 1 MB (100 pJ): 20 * 5 ** (3 / 5)
    assert hw.energy.smem.read_pj == pytest.approx(20 * 5 ** 0.6)
    assert cost.hardware("vegeta").runs("1:4") and not cost.hardware("vegeta").runs("1:8")
    assert cost.hardware("vegeta_m8").runs("2:8+1:8") and cost.hardware("dstc").runs("1:8")
    assert cost.hardware("dense").runs("dense") and not cost.hardware("dense").runs("2:4")
    with pytest.raises(ValueError, match="must hold exactly"):
        cost.Hardware(name="bad", description="", tile_m=3)


# --------------------------------------------------------------------------- estimate


def test_one_gemm_by_hand_dense_core():
    """256 x 512 x 256 on the dense core, every number from the documented model."""
    hw = cost.hardware("dense")
    e = hw.energy
    est = cost.estimate([cost.GEMM("g", 256, 512, 256)], hw)
    m, k, n = 256, 512, 256
    compute = (m // 16) * (n // 16) * (k // 4)  # 16 x 16 x 4 array
    a = b = m * k * 8  # bits; each fits in half the 256 KB SMEM (2**20 bits): held, read once
    c = m * n * 8
    dram_read, dram_write = a + b, c
    smem_read = a * math.ceil(n / 128) + b * math.ceil(m / 64) + c  # RF tile 64 x 128, C to DRAM
    smem_write = dram_read + c
    rf_write = smem_read - c
    rf_read = a * (n // 16) + b * (m // 16)
    macs = m * k * n
    assert est.compute_cycles[0] == compute == 32768
    assert est.dram_cycles[0] == pytest.approx((dram_read + dram_write) / (8 * 32))
    assert est.smem_cycles[0] == pytest.approx(smem_read / (8 * 42))
    assert est.cycles[0] == compute  # compute-bound
    energy = (
        dram_read * 512 / 64 + dram_write * 512 / 64
        + smem_read * 285.71464 / 512 + smem_write * 316.96744 / 512
        + rf_read * 1.65889 / 8 + rf_write * 1.67589 / 8
        + macs * 0.5608  # the dense core charges every MAC
    )
    assert e.mac_pj == 0.5608 and e.dram.read_pj == 512
    assert est.energy_pj[0] == pytest.approx(energy)
    assert est.total_edp == pytest.approx(compute * energy)
    assert est.edp[0] == pytest.approx(compute * energy)


def test_one_gemm_by_hand_stc_2_4():
    est = cost.estimate([cost.GEMM("g", 256, 512, 256)], "stc", weight_series="2:4", density=0.5)
    m, k, n = 256, 512, 256
    kslots = 2 * (k // 4)
    assert est.compute_cycles[0] == (m // 16) * (n // 16) * (kslots // 4) == 16384
    a, b_vals, b_meta = m * k * 8, n * kslots * 8, n * kslots * 2  # 2-bit index per kept value
    c = m * n * 8
    assert est.traffic_bits["dram"][0] == a + b_vals + b_meta + c
    smem_read = a * 2 + (b_vals + b_meta) * 4 + c
    assert est.traffic_bits["smem_read"][0] == smem_read
    assert est.cycles[0] == 16384  # still compute-bound: exactly 2x the dense core
    assert est.energy_by_part["mac"][0] == pytest.approx(m * n * kslots * 0.5608)  # all slots effectual
    half_dense = cost.estimate([cost.GEMM("g", 256, 512, 256)], "stc", weight_series="2:4", density=0.25)
    gated = m * n * kslots / 2
    assert half_dense.energy_by_part["mac"][0] == pytest.approx(gated * 0.5608 + gated * 0.01798)


_SHAPES = [(1, 2048, 1000), (49, 4608, 512), (3136, 64, 64), (12544, 147, 64), (128, 768, 3072),
           (384, 3072, 768), (7, 9, 5), (4096, 4096, 4096)]


def test_stc_2_4_at_most_2x_and_2x_when_compute_bound():
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    dense = cost.estimate(gemms, "dense")
    sparse = cost.estimate(gemms, "stc", weight_series="2:4", density=0.5)
    speedup = dense.cycles / sparse.cycles
    assert np.all(speedup <= 2.0 + 1e-9), speedup
    assert np.all(speedup >= 1.0 - 1e-9), speedup
    big = _SHAPES.index((4096, 4096, 4096))
    assert dense.cycles[big] == dense.compute_cycles[big]  # compute-bound
    assert speedup[big] == pytest.approx(2.0, rel=0.01)
    assert np.all(sparse.energy_pj < dense.energy_pj)


@pytest.mark.parametrize("hw_name", ["vegeta_m8", "ttc", "dstc"])
def test_more_terms_never_cost_less(hw_name):
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    chains = [["1:8", "1:8+1:8", "1:8+1:8+1:8", "1:8+1:8+1:8+2:8"], ["1:4", "1:4+1:8", "1:4+1:8+2:8"],
              ["2:4", "2:4+1:8", "2:4+1:8+1:8"]]
    for chain in chains:
        ests = [cost.estimate(gemms, hw_name, weight_series=s) for s in chain]
        for fewer, more in zip(ests, ests[1:]):
            assert np.all(more.cycles >= fewer.cycles - 1e-9)
            assert np.all(more.energy_pj >= fewer.energy_pj - 1e-6)
            assert np.all(more.edp >= fewer.edp - 1e-6)


def test_one_pass_ttc_beats_multi_pass_on_series():
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    multi = cost.estimate(gemms, "vegeta_m8", weight_series="2:8+1:8")
    one = cost.estimate(gemms, "ttc", weight_series="2:8+1:8")
    np.testing.assert_array_equal(one.compute_cycles, multi.compute_cycles)  # same slots
    assert np.all(one.energy_pj < multi.energy_pj)  # the dense operand is read once, no psum passes
    assert np.all(one.cycles <= multi.cycles)
    # 1:4 + 1:4 is 2:4's compute, but a second pass re-reads A: never cheaper than 2:4.
    two = cost.estimate(gemms, "vegeta", weight_series="1:4+1:4")
    single = cost.estimate(gemms, "vegeta", weight_series="2:4")
    assert np.all(two.energy_pj > single.energy_pj)


def test_activation_series_decomposition_pass_by_hand():
    g = [cost.GEMM("g", 256, 512, 256)]
    m, k, n = 256, 512, 256
    a_dense, b_dense, c = m * k * 8, k * n * 8, m * n * 8
    a_terms = m * (k // 2) * 8 + m * (k // 2) * 2  # 2:4 values + 2-bit indices
    vegeta = cost.estimate(g, "vegeta", activation_series="2:4", activation_density=0.5)
    # decomposition pass (read A, write its terms), then the GEMM reads the terms
    assert vegeta.traffic_bits["dram"][0] == a_dense + a_terms + a_terms + b_dense + c
    ttc = cost.estimate(g, "ttc", activation_series="2:4", activation_density=0.5)
    assert ttc.traffic_bits["dram"][0] == a_dense + b_dense + c  # decomposed on load
    np.testing.assert_array_equal(ttc.compute_cycles, vegeta.compute_cycles)
    assert ttc.energy_pj[0] < vegeta.energy_pj[0]


def test_dstc_at_density_one_costs_more_than_dense():
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    dense = cost.estimate(gemms, "dense")
    dstc = cost.estimate(gemms, "dstc", density=1.0, activation_density=1.0)
    assert np.all(dstc.cycles >= dense.cycles)
    assert np.all(dstc.energy_pj > dense.energy_pj)
    assert dstc.total_edp > dense.total_edp
    macs = sum(m * k * n for m, k, n in _SHAPES)
    assert dstc.energy_by_part["mac"].sum() == pytest.approx(macs * (0.5608 + 0.49218 + 0.49218))
    # ... and skipping pays off when both operands are sparse.
    sparse = cost.estimate(gemms, "dstc", density=0.2, activation_density=0.5)
    big = _SHAPES.index((4096, 4096, 4096))
    # expected effectual products per output: k * 0.2 * 0.5 = 409.6, 4 per cycle
    assert sparse.compute_cycles[big] == 256 * 256 * math.ceil(4096 * 0.1 / 4)
    assert sparse.total_edp < dense.total_edp


@pytest.mark.parametrize(
    "hw_name, series",
    [("dense", "2:4"), ("stc", "1:4"), ("stc", "2:4+1:8"), ("vegeta", "2:8+1:8"), ("ttc", "3:8")],
)
def test_unsupported_series_raises(hw_name, series):
    with pytest.raises(ValueError, match=re.escape(f"hardware '{hw_name}' cannot run weight series '{series}'")):
        cost.estimate([cost.GEMM("g", 64, 64, 64)], hw_name, weight_series=series)


def test_bad_arguments_raise():
    g = [cost.GEMM("a", 64, 64, 64), cost.GEMM("att", 64, 64, 64, batch=4, weight=False)]
    with pytest.raises(ValueError, match="one operand only"):
        cost.estimate(g, "stc", weight_series="2:4", activation_series="2:4")
    with pytest.raises(ValueError, match=r"names GEMMs \['nope'\]"):
        cost.estimate(g, "stc", weight_series={"nope": "2:4"})
    with pytest.raises(ValueError, match="no weight operand"):
        cost.estimate(g, "stc", weight_series={"att": "2:4"})
    with pytest.raises(ValueError, match=r"density must lie in \[0, 1\]; got \[1.5, 1.5\]"):
        cost.estimate(g, "dense", density=1.5)
    with pytest.raises(ValueError, match="3 entries for 2 GEMMs"):
        cost.estimate(g, "dense", weight_series=["dense"] * 3)
    with pytest.raises(ValueError, match="at least one GEMM"):
        cost.estimate([], "dense")


def test_series_forms_agree_and_attention_stays_dense():
    g = [cost.GEMM("a", 128, 768, 768), cost.GEMM("att", 128, 64, 128, batch=12, weight=False)]
    one = cost.estimate(g, "vegeta", weight_series="1:4")
    mapped = cost.estimate(g, "vegeta", weight_series={"a": patterns.parse("1:4")})
    listed = cost.estimate(g, "vegeta", weight_series=["1:4", "dense"])
    for other in (mapped, listed):
        np.testing.assert_allclose(other.cycles, one.cycles)
        np.testing.assert_allclose(other.energy_pj, one.energy_pj)
    assert one.weight_series == ("1:4", "dense")
    act = cost.estimate(g, "vegeta", activation_series="2:4", activation_density=0.5)
    dense = cost.estimate(g, "vegeta")
    assert np.all(act.compute_cycles * 2 == dense.compute_cycles)  # A along k: attention too


# --------------------------------------------------------------------------- report


def _small_config():
    config = ml_collections.ConfigDict()
    config.experiment = "edp"
    config.model = "mlp"
    config.model_kwargs = ml_collections.ConfigDict({"hidden": (64, 32)})
    config.input_shapes = ((16, 8, 8, 1),)
    config.seed = 0
    config.init_from = None
    config.sparsities = (0.5, 0.9)
    config.prune = None
    config.rule = r"kernel$"
    config.hardware = ("dense", "stc", "vegeta_m8", "dstc", "ttc")
    config.series = ("dense", "2:4", "1:4", "2:8+1:8")
    config.energy = "sparseloop45"
    config.activation_density = 1.0
    config.min_kept_l1 = 0.95
    return config


def test_edp_report_end_to_end(tmp_path, capsys):
    results = report.edp_report(_small_config(), str(tmp_path))
    assert "EDP relative to dense core" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "edp_mlp_16x8x8x1.png") as image:  # one bar panel per weight set
        assert image.format == "PNG" and image.size[0] >= 2 * 400
        assert len(set(image.convert("L").getdata())) > 2
    with open(tmp_path / "totals.csv") as f:
        totals = list(csv.DictReader(f))
    # runs per sparsity: dense 1+tasd, stc 2+tasd, vegeta_m8 4+tasd, dstc 4+tasd, ttc 4+tasd
    assert len(totals) == 2 * (2 + 3 + 5 + 5 + 5)
    base = [r for r in totals if r["hardware"] == "dense" and r["series"] == "dense"]
    assert all(float(r["rel_edp"]) == 1.0 for r in base)
    with open(tmp_path / "per_layer.csv") as f:
        layers = list(csv.DictReader(f))
    assert len(layers) == len(totals) * 3  # the MLP's three Dense layers
    # Measured densities: dense keeps the pruned density; 2:4 at 90% pruning keeps nearly all.
    dense_rows = [r for r in layers if r["series"] == "dense" and r["hardware"] == "dense"]
    for r in dense_rows:
        assert float(r["weight_density"]) == pytest.approx(1 - float(r["sparsity"]), abs=1e-3)
    stc_24 = [r for r in totals if r["hardware"] == "stc" and r["series"] == "2:4"]
    assert all(float(r["rel_cycles"]) < 1.0 for r in stc_24)
    assert results["workloads"]["mlp_16x8x8x1"] == {"gemms": 3, "macs": 16 * (64 * 64 + 64 * 32 + 32 * 10),
                                                     "weight_gemms": 3}
    with open(tmp_path / "results.json") as f:
        saved = json.load(f)
    assert saved["tasd_choice"]["mlp_16x8x8x1/ew(sparsity=0.9)/ttc"]
    assert [w["label"] for w in saved["weights"]] == ["ew(sparsity=0.5)", "ew(sparsity=0.9)"]
    assert saved["weights"][0]["source"] == "random_init"
    assert [round(w["sparsity"], 3) for w in saved["weights"]] == [0.5, 0.9]


def test_edp_report_rejects_config_without_dense(tmp_path):
    config = _small_config()
    config.hardware = ("stc",)
    with pytest.raises(ValueError, match="must both include 'dense'"):
        report.edp_report(config, str(tmp_path))


def test_a_fully_pruned_layer_costs_no_mac_and_stays_finite():
    g = [cost.GEMM("empty", 64, 128, 64), cost.GEMM("full", 64, 128, 64)]
    est = cost.estimate(g, "dstc", density=[0.0, 1.0])
    assert est.energy_by_part["mac"][0] == 0.0 < est.energy_by_part["mac"][1]
    assert est.compute_cycles[0] == 0 and np.isfinite(est.total_edp)
