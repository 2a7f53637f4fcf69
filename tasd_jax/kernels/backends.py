"""Backend names shared by `tw_matmul` and `series_matmul`, and the default per platform.

"xla" and "reference" are pure JAX (tw_xla.py, series_xla.py); "pallas" is a
Pallas kernel (tw_pallas.py, series_pallas.py) for GPUs, which also runs
anywhere in interpret mode; "auto" picks the platform's default.
"""

import jax

BACKENDS = ("auto", "xla", "pallas", "reference")


def default_backend() -> str:
    """ "pallas" on GPU, "xla" elsewhere."""
    return "pallas" if jax.default_backend() == "gpu" else "xla"


def check_backend(backend: str) -> str:
    """The backend to run: `backend`, or `default_backend()` for "auto".

    Raises ValueError for a name not in BACKENDS.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return default_backend() if backend == "auto" else backend
