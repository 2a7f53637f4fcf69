"""JAX's multi-process runtime for a training run: `config.distributed`, its checks, and the start.

One run may span N processes (on one machine or several), each started with
the same command and its own `config.distributed.process_id`:

    python -m experiments.run --config=configs/tw_digits.py --workdir=DIR \
        --config.distributed.num_processes=2 --config.distributed.process_id=0 \
        --config.distributed.coordinator=127.0.0.1:12355

`config.distributed` has `num_processes` (1: a single-process run, nothing is
started), `process_id` (0 .. num_processes - 1; process 0 hosts the
coordinator) and `coordinator` ("host:port" of process 0). A field left unset
(None) is left to `jax.distributed.initialize`, which reads it from the
environment: `JAX_COORDINATOR_ADDRESS`, and the process count and id of the
cluster managers it knows (SLURM, Open MPI, Kubernetes, Cloud TPU). With every
field at its default, the run joins the multi-process runtime only when
`JAX_COORDINATOR_ADDRESS` is set. docs/distributed.md has the whole picture.
"""

import dataclasses
import os

import jax
import ml_collections

# The environment variable `jax.distributed.initialize` reads the coordinator from.
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How this process joins a multi-process run; None: read by
    `jax.distributed.initialize` from the environment."""

    num_processes: int | None
    process_id: int | None
    coordinator: str | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_address(address: object, name: str) -> None:
    """`address` is "host:port" with a non-empty host and a port in 1..65535.

    Raises:
      ValueError: naming `name`, the value and the form it must take.
    """
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{name}={address!r} must be 'host:port' (process 0's address and a free port in "
            "1..65535 on it, e.g. '127.0.0.1:12355')"
        )


def settings(config: ml_collections.ConfigDict) -> Settings | None:
    """The multi-process settings of `config.distributed`, or None for a single-process run.

    Checks the values and reads the environment; touches no JAX backend, so a
    bad value is reported before anything starts.

    Raises:
      ValueError: a field with a bad value, naming it and the rule it broke.
    """
    dc = config.get("distributed")
    if dc is None:
        return None
    num, pid, coordinator = dc.get("num_processes", 1), dc.get("process_id"), dc.get("coordinator")
    if not _is_int(num) or num < 1:
        raise ValueError(f"config.distributed.num_processes={num!r} must be an integer >= 1")
    if pid is not None and (not _is_int(pid) or not 0 <= pid < num):
        raise ValueError(
            f"config.distributed.process_id={pid!r} must be an integer in 0..{num - 1} "
            f"(one id per process of config.distributed.num_processes={num})"
        )
    if coordinator is not None:
        check_address(coordinator, "config.distributed.coordinator")
    if num > 1:
        return Settings(num, pid, coordinator)
    if pid is None and coordinator is None and os.environ.get(COORDINATOR_ENV):
        # Every field at its default: the environment describes the run.
        check_address(os.environ[COORDINATOR_ENV], COORDINATOR_ENV)
        return Settings(None, None, None)
    return None


def initialize(config: ml_collections.ConfigDict) -> None:
    """Starts JAX's multi-process runtime when `config.distributed` (or the
    environment) asks for it.

    Must run before any JAX computation of the process. On CPU the
    cross-process collectives are gloo's. Does nothing for a single-process
    run, and nothing when this process already joined the same run.

    Raises:
      ValueError: a bad setting (see `settings`), a process that already joined
        another run, or `jax.distributed.initialize` failing (a process that
        already used JAX, fields the environment does not supply, no coordinator).
    """
    wanted = settings(config)
    if wanted is None:
        return
    if jax.distributed.is_initialized():
        if wanted.num_processes not in (None, jax.process_count()) or wanted.process_id not in (
            None, jax.process_index()
        ):
            raise ValueError(
                f"this process already runs as process {jax.process_index()} of "
                f"{jax.process_count()}, not as config.distributed.process_id="
                f"{wanted.process_id} of num_processes={wanted.num_processes}"
            )
        return
    try:
        jax.distributed.initialize(wanted.coordinator, wanted.num_processes, wanted.process_id)
    except (RuntimeError, ValueError) as err:  # jax's own message says what is wrong
        raise ValueError(
            f"jax.distributed.initialize(coordinator={wanted.coordinator!r}, num_processes="
            f"{wanted.num_processes!r}, process_id={wanted.process_id!r}) failed: {err} (fields "
            f"left None come from {COORDINATOR_ENV} or a cluster manager JAX detects, such as "
            "SLURM or Open MPI; and a process joins only before its first JAX computation: start "
            "each with `python -m experiments.run`)"
        ) from err
    # Read when the first JAX computation creates the CPU client (after this): CPU
    # collectives across processes go through gloo. GPU and TPU clients ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
