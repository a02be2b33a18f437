"""User-facing errors: one clear line naming the file and the problem."""
from __future__ import annotations

from os import PathLike


class SsnetError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints ``ssnet: error: <message>`` on one line and exits non-zero;
    ``--debug`` shows the traceback.
    """


def input_error(path: str | PathLike | None, problem: str) -> SsnetError:
    """Build an :class:`SsnetError` of the form ``<path>: <problem>``."""
    return SsnetError(f"{path}: {problem}" if path is not None else problem)
