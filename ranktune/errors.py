"""One-line, user-facing errors for bad input and bad settings."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class InputError(Exception):
    """Bad user input: a file, a record in it, or a setting. Printed as one line, never a traceback."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field, self.message = path, line, field, message
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)


def exit_on_input_error(main: F) -> F:
    """Wrap a stage's `main` so bad input ends the process with one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
