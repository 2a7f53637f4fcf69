"""The patterns guide's worked example of a user-defined pattern, executed as written."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import patterns

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "patterns.md"


def _readme_example() -> dict:
    text = GUIDE.read_text()
    section = text[text.index("### Adding a pattern"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    if "rows" not in patterns.registered():
        exec(compile(code, str(GUIDE), "exec"), namespace)
    return namespace


def test_readme_pattern_registers_parses_and_prunes_rows():
    _readme_example()
    pattern = patterns.parse("rows(sparsity=0.5)")
    assert pattern.spec() == "rows(sparsity=0.5)"
    w = jnp.abs(jax.random.normal(jax.random.key(0), (16, 8)))
    w = w.at[3].mul(100.0)  # row 3 must survive
    mask = np.asarray(jax.jit(lambda s: pattern.mask(s))(w))
    assert mask[3].all()
    assert (mask.all(1) | ~mask.any(1)).all() and mask.all(1).sum() == 8
    assert bool(pattern.conforms(jnp.asarray(mask)))
    assert not bool(pattern.conforms(jnp.eye(16, 8, dtype=bool)))


def test_readme_pattern_global_mode():
    _readme_example()
    small, large = jnp.ones((8, 4)), jnp.full((8, 4), 5.0)
    masks = patterns.global_masks("rows(sparsity=0.5)", [small, large])
    assert not bool(masks[0].any()) and bool(masks[1].all())
