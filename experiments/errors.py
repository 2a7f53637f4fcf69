"""The error a driver raises for a config or workdir it cannot run, before any work."""

import contextlib
from typing import Iterator


class ConfigError(ValueError):
    """The config or the workdir cannot make (or resume) a run; raised before
    any data is read or any step trained, with a message saying what to change."""


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Re-raises a ValueError of the enclosed checks or building as a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err
