"""Drivers: one module per experiment, each a `(config, workdir) -> dict` function.

`python -m experiments.run --config=configs/NAME.py --workdir=DIR` dispatches on
`config.experiment` (`run.EXPERIMENTS`): `train`, `sweep`, `decompose_report`,
`edp`, `tw_kernels`. They read and write through `outputs` (results files) and
`tasd_jax.export` (a training run's weights); `weights` picks what a report
measures.
"""
