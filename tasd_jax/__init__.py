"""tasd_jax: TASD structured decomposition and tile-wise sparsity in JAX.

Subpackages: `patterns` (sparsity patterns as values), `tasd` (series
decomposition), `pruning`, `models`, `data`, `train`, `cost` (EDP model),
`kernels` (fast sparse matmuls), `kernel_speed` (their speed against dense).
"""

__version__ = "0.1.0"
