"""What every config-driven job's `main` shares: a configuration error is one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from moda_train.core.config_loader import ConfigError

CONFIG_ERROR_EXIT = 2


def exits_on_config_error(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a CLI `main`: a ConfigError raised anywhere inside prints `config error: ...` and returns 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except ConfigError as err:
            print(f"config error: {err}", file=sys.stderr)
            return CONFIG_ERROR_EXIT

    return wrapper
