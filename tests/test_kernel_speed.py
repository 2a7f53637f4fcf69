"""Tests of the TW speed measurements (tasd_jax.kernel_speed): their keys and
the agreement of the timed candidates, not their speed."""

import re

import pytest

from tasd_jax import kernel_speed


def test_matmul_speed_keys():
    row = kernel_speed.matmul_speed(
        16, 32, 64, 0.75, g=16, reps=1, backends=("xla", "reference")
    )
    assert set(row["ms"]) == {"dense", "xla", "reference"} == set(row["ms_min"])
    assert set(row["speedup"]) == {"xla", "reference"} == set(row["fraction_of_limit"])
    assert row["density"] < 0.5 and row["compute_limit"] == pytest.approx(1 / row["density"])
    limit = row["compute_limit"]
    assert row["fraction_of_limit"]["xla"] == pytest.approx(row["speedup"]["xla"] / limit)
    assert (row["M"], row["K"], row["N"], row["g"]) == (16, 32, 64, 16)


def test_encoder_speed_keys_and_logits():
    row = kernel_speed.encoder_speed(
        num_layers=1, seq=8, batch=2, g=16, reps=1, hidden=32, mlp_dim=64, num_heads=2
    )
    assert set(row["ms"]) == {"dense", "tw", "tw_unfolded"}
    assert isinstance(row["speedup"], float) and row["speedup"] > 0
    assert row["fraction_of_limit"] == pytest.approx(row["speedup"] / row["compute_limit"])
    assert row["max_abs_diff_logits"] < 1e-4
    assert "1 layers" in row["model"]
    with pytest.raises(ValueError, match=re.escape("sparsity=1.5 must be in [0, 1)")):
        kernel_speed.encoder_speed(sparsity=1.5)
