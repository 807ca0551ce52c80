"""User-facing errors and the CLI entry wrapper.

Every problem caused by the user's input (a missing file, a corrupt volume, a bad flag) is raised
as :class:`UserError` with one line naming the file and the problem. :func:`run_cli` turns it into
``error: <message>`` on stderr and exit status 2, without a traceback.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Optional, Sequence

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error in the user's input. The message is one line and names the file."""

    def __init__(self, message: str, path: Optional[object] = None):
        msg = " ".join(str(message).split())  # force one line
        if path is not None:
            msg = f"{path}: {msg}"
        super().__init__(msg)


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> None:
    """Run ``main(argv)`` and exit: 0 on success, 2 with a one-line message on :class:`UserError`,
    130 on Ctrl-C. Unexpected exceptions keep their traceback (they are bugs, not user errors)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))
