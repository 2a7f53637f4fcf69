"""Tests of tasd_jax.cost (GEMM extraction, hardware data, the EDP model) and the EDP experiment."""

import csv
import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import edp_report as report
from tasd_jax import cost, models, patterns, tree_paths
from tasd_jax.cost import sweep, workloads

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
    return workloads.workload(name, model, variables, input_shape).gemms


def test_one_owner_of_layer_names():
    # A GEMM's layer, a params tree's layers and a layer's kernel path are one
    # mapping: only a leaf named "kernel" of rank >= 2 is a layer.
    assert tree_paths.layer_name("params/stage1/conv_1/kernel") == "stage1/conv_1"
    assert tree_paths.layer_name("stage1/conv_1/kernel") == "stage1/conv_1"
    assert tree_paths.layer_name("params/embed/embedding") is None
    assert tree_paths.layer_name("params/dense/my_kernel") is None
    assert tree_paths.layer_name(None) is None
    assert tree_paths.kernel_path("stage1/conv_1") == "stage1/conv_1/kernel"
    flat = {"a/kernel": np.zeros((4, 2)), "a/bias": np.zeros(2), "ln/kernel": np.zeros(3),
            "emb/embedding": np.zeros((5, 4)), "conv/kernel": np.zeros((3, 3, 2, 4))}
    assert tree_paths.gemm_layers(flat) == {"a": "a/kernel", "conv": "conv/kernel"}
    gemm = cost.GEMM("x", 1, 4, 2, weight_path="params/embed/embedding")
    assert gemm.layer is None
    assert gemm._replace(weight_path="params/a/kernel").layer == "a"


def test_estimate_parses_each_distinct_spec_once(monkeypatch):
    gemms = [cost.GEMM(f"g{i}", 8, 64, 8) for i in range(40)]
    parsed = []
    real_parse = patterns.parse
    # A pattern passed on is returned as it is; only strings are parsed.
    monkeypatch.setattr(patterns, "parse", lambda spec: (
        parsed.append(spec) if isinstance(spec, str) else None) or real_parse(spec))
    est = cost.estimate(gemms, "stc", weight_series=["2:4"] * 20 + ["dense"] * 20,
                        activation_series=None)
    assert est.weight_series == ("2:4",) * 20 + ("dense",) * 20
    assert sorted(map(str, parsed)) == ["2:4", "dense", "dense"]  # weights, activations


def test_series_canonical_form():
    assert patterns.as_series("2:4 + 1:4").canonical == "2:4+1:4"
    assert patterns.as_series("8:8").canonical == "dense"
    assert patterns.as_series("dense").canonical == "dense"
    assert patterns.as_series("2:8").canonical == "2:8"


def test_choice_to_gemm_operands():
    gemms = [cost.GEMM("a", 8, 64, 8, weight_path="params/a/kernel"),
             cost.GEMM("attn", 8, 64, 8, weight=False),
             cost.GEMM("b", 8, 64, 8, weight_path="params/b/kernel")]
    density = lambda g, spec: {"2:4": 0.5, "dense": 0.9}[spec]  # noqa: E731
    ops = cost.choice.gemm_operands(gemms, cost.hardware("ttc_vegeta_m4"), {"a": "2:4", None: "2:4"},
                                    {"b": "2:4"}, density, {"a": 0.3, "b": 0.6})
    assert ops == [("2:4", "dense", 0.5, 1.0), ("dense", "dense", 0.9, 1.0),
                   ("dense", "2:4", 0.9, 0.6)]
    dstc = cost.choice.gemm_operands(gemms, cost.hardware("dstc"), {}, {}, density, {"a": 0.3})
    assert [op.activation_density for op in dstc] == [0.3, 1.0, 1.0]  # skipped as they are
    est = cost.choice.estimate_operands(gemms, "ttc_vegeta_m4", ops)
    assert est.weight_series == ("2:4", "dense", "dense")
    assert est.activation_series == ("dense", "dense", "2:4")
    with pytest.raises(ValueError, match="2 operands given for 3 GEMMs"):
        cost.choice.estimate_operands(gemms, "tc", ops[:2])


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
    with pytest.raises(ValueError, match="unknown energy table 'x'.*'sparseloop'.*horowitz45"):
        cost.hardware("stc", energy="x")
    hw = cost.hardware("stc", energy="horowitz45")
    assert hw.energy.mac_pj == pytest.approx(0.23)  # Horowitz int8 mult 0.2 + add 0.03
    # 256 KB interpolated log-log between 32 KB (20 pJ) and 1 MB (100 pJ): 20 * 5 ** (3 / 5)
    assert hw.energy.smem.read_pj == pytest.approx(20 * 5 ** 0.6)
    # Each of the artefact's designs has its own table; the others build on the STC's.
    assert cost.hardware("tc").energy.smem.read_pj == 536.05005
    assert cost.hardware("stc").energy.smem.read_pj == 285.71464
    assert cost.hardware("dstc").energy.lrf.bits == 16
    assert cost.hardware("ttc_vegeta_m8").energy is cost.hardware("stc").energy
    assert cost.hardware("vegeta").runs("1:4") and not cost.hardware("vegeta").runs("1:8")
    assert cost.hardware("vegeta_m8").runs("2:8+1:8") and cost.hardware("dstc").runs("1:8")
    assert cost.hardware("dense").runs("dense") and not cost.hardware("dense").runs("2:4")


# --------------------------------------------------------------------------- estimate


def test_one_gemm_by_hand_dense_core():
    """1024 x 1152 x 128 (a ResNet-50 layer as the artefact runs it): every count by hand.

    Weights are Sparseloop's A (M = 128 rows), activations B (N = 1024). Both fit the
    SMEM, so DRAM moves each operand once; the 16-row PE array spans the 128 rows with
    the four subpartitions (M_sp = 4, M_s = 2) and each weight is held for 64 outputs.
    """
    m, k, n = 1024, 1152, 128
    est = cost.estimate([cost.GEMM("g", m, k, n)], "tc")
    macs = m * k * n
    assert est.compute_cycles[0] == est.cycles[0] == macs / 1024 == 147456
    assert est.traffic_words["dram_read"][0] == n * k + m * k
    assert est.traffic_words["dram_write"][0] == m * n
    t = cost.hardware("tc").energy
    lrf_fills = macs / 64  # a weight is re-loaded once per 64 outputs
    rf_updates = macs / 16  # one per 16-wide reduction over k
    by_hand = {
        "dram": (n * k + m * k + m * n) * 512 / 8,
        "smem": lrf_fills * t.smem.read_pj / 64 + macs / 64 * t.smem.read_pj / 64  # A, then B to 64 rows
        + (n * k + m * k) * t.smem.write_pj / 64,
        "rf": (rf_updates - m * n) * 3.1647 + (rf_updates + m * n) * 3.20183,
        "lrf": (macs + lrf_fills) * 0.02435,
        "mac": macs * 0.44688,
    }
    for part, value in by_hand.items():
        assert est.energy_by_part[part][0] == pytest.approx(value), part
    assert est.total_energy_pj == pytest.approx(276.58e6, rel=1e-4)  # Sparseloop: 276.58 uJ
    assert est.total_edp == pytest.approx(est.cycles[0] * est.energy_pj[0])


def test_one_gemm_by_hand_stc_2_4():
    """The same GEMM with 2:4 weights: 32 positions of k per 16-column PE row, half the MACs."""
    m, k, n = 1024, 1152, 128
    est = cost.estimate([cost.GEMM("g", m, k, n)], "stc", weight_series="2:4")
    macs = m * k * n
    assert est.cycles[0] == est.compute_cycles[0] == macs / 2 / 1024 == 73728
    assert est.executed_macs[0] == macs / 2
    assert est.energy_by_part["mac"][0] == pytest.approx(macs / 2 * 0.5608)
    # The weights move as their kept values with a 2-bit index each (free at DRAM).
    assert est.traffic_words["dram_read"][0] == n * k / 2 * (1 + 2 / 8) + m * k
    assert est.total_energy_pj == pytest.approx(173.42e6, rel=1e-4)  # Sparseloop: 173.42 uJ


_SHAPES = [(1, 2048, 1000), (49, 4608, 512), (3136, 64, 64), (12544, 147, 64), (128, 768, 3072),
           (384, 3072, 768), (7, 9, 5), (4096, 4096, 4096)]


def test_stc_2_4_at_most_2x_and_2x_when_compute_bound():
    # A speed property: the mapper picks the fastest mapping (the least-EDP one may be slower).
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    dense = cost.estimate(gemms, "stc", mapping_objective="delay")
    sparse = cost.estimate(gemms, "stc", weight_series="2:4", mapping_objective="delay")
    speedup = dense.cycles / sparse.cycles
    assert np.all(speedup <= 2.0 + 1e-9), speedup
    assert np.all(speedup >= 1.0 - 1e-9), speedup  # k padded to 32 positions: at worst equal
    long_k = np.array([k >= 32 for _, k, _ in _SHAPES])
    big = _SHAPES.index((4096, 4096, 4096))
    assert dense.cycles[big] == dense.compute_cycles[big]  # compute-bound
    assert speedup[big] == pytest.approx(2.0, rel=0.01)
    assert np.all(sparse.energy_pj[long_k] < dense.energy_pj[long_k])


@pytest.mark.parametrize("hw_name", ["vegeta_m8", "ttc", "dstc"])
def test_more_terms_never_cost_less(hw_name):
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    chains = [["1:8", "1:8+1:8", "1:8+1:8+1:8", "1:8+1:8+1:8+2:8"], ["1:4", "1:4+1:8", "1:4+1:8+2:8"],
              ["2:4", "2:4+1:8", "2:4+1:8+1:8"]]
    for chain in chains:
        ests = [cost.estimate(gemms, hw_name, weight_series=s) for s in chain]
        # Every mapping costs more cycles and energy for more work, so the least-EDP
        # mapping's EDP never drops (its cycles or energy alone may).
        for fewer, more in zip(ests, ests[1:]):
            assert np.all(more.edp >= fewer.edp * (1 - 1e-9))
            assert np.all(more.executed_macs >= fewer.executed_macs)


def test_one_pass_ttc_beats_multi_pass_on_series():
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    multi = cost.estimate(gemms, "vegeta_m8", weight_series="2:8+1:8")
    one = cost.estimate(gemms, "ttc", weight_series="2:8+1:8")
    assert np.all(one.edp <= multi.edp * (1 + 1e-9))  # the dense operand is streamed once
    # 1:4 + 1:4 is 2:4's compute, but a second pass re-streams B: never cheaper than 2:4.
    two = cost.estimate(gemms, "vegeta", weight_series="1:4+1:4")
    single = cost.estimate(gemms, "vegeta", weight_series="2:4")
    assert np.all(two.edp >= single.edp * (1 - 1e-9)) and two.total_edp > single.total_edp


def test_activation_terms_where_the_tasd_units_sit():
    """TASD-A: the paper's placement stores the terms; "load" reads A dense from DRAM;
    a design without TASD units pays a decomposition pass through DRAM."""
    m, k, n = 1024, 1152, 128
    g = [cost.GEMM("g", m, k, n)]
    terms = m * k / 2 * (1 + 2 / 8)  # 2:4 values and their 2-bit indices, in words
    output = cost.estimate(g, "ttc_stc_m4", activation_series="2:4")
    load = cost.estimate(g, "ttc_stc_m4", activation_series="2:4", activation_placement="load")
    prior = cost.estimate(g, "stc", activation_series="2:4")
    assert output.traffic_words["dram_read"][0] == terms + n * k
    assert load.traffic_words["dram_read"][0] == m * k + n * k
    assert prior.energy_by_part["dram"][0] == pytest.approx(
        output.energy_by_part["dram"][0] + (m * k + terms) * 64)  # the pass: read A, write terms
    compares = m * k * 2 * 3 / 4  # log2(4) (log2(4) + 1) / 4 per value
    for est in (output, load, prior):
        assert est.energy_by_part["tasd"][0] == pytest.approx(compares * 0.03)
    assert output.total_edp < load.total_edp < prior.total_edp
    with pytest.raises(ValueError, match="activation_placement='pe'"):
        cost.estimate(g, "ttc_stc_m4", activation_series="2:4", activation_placement="pe")


def test_dstc_skips_zeros_of_both_operands():
    gemms = [cost.GEMM(f"g{i}", *s) for i, s in enumerate(_SHAPES)]
    dense = cost.estimate(gemms, "tc")
    dstc = cost.estimate(gemms, "dstc")
    # Dense operands: nothing to skip, and every product is merged through the RF.
    assert dstc.total_energy_pj > dense.total_energy_pj
    sparse = cost.estimate(gemms, "dstc", density=0.2, activation_density=0.5)
    assert np.all(sparse.edp <= dstc.edp)
    np.testing.assert_allclose(sparse.executed_macs, dstc.executed_macs * 0.1)
    assert sparse.total_edp < dense.total_edp
    # A series only lowers the density the DSTC sees, capped at its coverage.
    capped = cost.estimate(gemms, "dstc", weight_series="1:4", density=0.9, activation_density=0.5)
    quarter = cost.estimate(gemms, "dstc", density=0.25, activation_density=0.5)
    np.testing.assert_allclose(capped.energy_pj, quarter.energy_pj)


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
    with pytest.raises(TypeError, match="hw must be a Hardware or a design name, got None"):
        cost.estimate(g, None)
    with pytest.raises(ValueError, match="activation_placement='pe' must be one of"):
        cost.estimate(g, "ttc", activation_placement="pe")
    with pytest.raises(ValueError, match="mapping_objective='energy' must be one of"):
        cost.estimate(g, "ttc", mapping_objective="energy")


def test_series_forms_agree_batch_multiplies_and_attention_stays_dense():
    g = [cost.GEMM("a", 128, 768, 768), cost.GEMM("att", 128, 64, 128, batch=12, weight=False)]
    one = cost.estimate(g, "vegeta", weight_series="1:4")
    mapped = cost.estimate(g, "vegeta", weight_series={"a": patterns.parse("1:4")})
    listed = cost.estimate(g, "vegeta", weight_series=["1:4", "dense"])
    for other in (mapped, listed):
        np.testing.assert_allclose(other.cycles, one.cycles)
        np.testing.assert_allclose(other.energy_pj, one.energy_pj)
    assert one.weight_series == ("1:4", "dense")
    single_head = cost.estimate([cost.GEMM("att", 128, 64, 128, weight=False)], "vegeta")
    assert one.cycles[1] == pytest.approx(12 * single_head.cycles[0])
    assert one.energy_pj[1] == pytest.approx(12 * single_head.energy_pj[0])
    act = cost.estimate(g, "vegeta", activation_series="2:4")
    dense = cost.estimate(g, "vegeta")
    assert np.all(act.executed_macs * 2 == dense.executed_macs)  # A along k: attention too
    assert one.layer_edp_sum == pytest.approx(float(np.sum(one.cycles * one.energy_pj)))
    assert one.layer_edp_sum < one.total_edp  # the product of totals has the cross terms


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
    config.energy = "sparseloop"
    config.activation_density = 1.0
    config.min_kept_l1 = 0.95
    return config


def test_edp_report_end_to_end(tmp_path, capsys):
    results = report.edp_report(_small_config(), str(tmp_path))
    assert "EDP relative to dense core" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "edp_mlp_16x8x8x1.png") as image:  # one heat-map panel per weight set
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


def test_edp_heat_map_boxes_the_lowest_within_budget_and_fades_the_rest():
    def row(hw, series, rel_edp, kept_l1):
        return {"weights": "w", "hardware": hw, "series": series, "rel_edp": rel_edp,
                "kept_l1": kept_l1}

    totals = [row("tc", "dense", 1.0, 1.0), row("tc", "tasd", 1.0, 1.0),
              row("stc", "dense", 0.9, 1.0), row("stc", "1:4", 0.2, 0.80),  # breaks 0.99
              row("stc", "2:4", 0.4, 0.995), row("stc", "tasd", 0.5, 0.99),
              row("stc", "dense", 7.0, 1.0) | {"weights": "other"}]
    panel = report.heat_map(totals, "w", ["tc", "stc"], ["dense", "1:4", "2:4", "tasd"], 0.99)
    np.testing.assert_array_equal(panel.values, [[1.0, np.nan, np.nan, 1.0], [0.9, 0.2, 0.4, 0.5]])
    np.testing.assert_array_equal(panel.within_budget, [[True, False, False, True],
                                                        [True, False, True, True]])
    assert panel.best.tolist() == [0, 2]  # stc: 2:4, not the lower 1:4 that breaks the budget


def test_edp_report_rejects_config_without_dense(tmp_path):
    config = _small_config()
    config.hardware = ("stc",)
    with pytest.raises(ValueError, match="must both include 'dense'"):
        report.edp_report(config, str(tmp_path))


def test_a_fully_pruned_layer_costs_no_mac_and_stays_finite():
    g = [cost.GEMM("empty", 64, 128, 64), cost.GEMM("full", 64, 128, 64)]
    est = cost.estimate(g, "dstc", density=[0.0, 1.0])
    assert est.energy_by_part["mac"][0] == 0.0 < est.energy_by_part["mac"][1]
    assert est.executed_macs[0] == 0 and np.isfinite(est.total_edp)


def test_sweep_workload_requires_dense_among_series():
    wl = workloads.Workload("one", [cost.GEMM("g", 8, 8, 8)])
    with pytest.raises(ValueError, match=r"series=\['2:4'\] must include 'dense'"):
        sweep.sweep_workload(wl, workloads.LayerWeights({}, {}, {}, {}, {}), hardware=["stc"],
                             series=["2:4"], energy="sparseloop", activation_density=1.0,
                             min_kept_l1=0.9)
