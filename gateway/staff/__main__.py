"""``python -m gateway.staff COMMAND ...``: the older name of ``sanaq-gateway staff COMMAND ...``.

Kept as an alias for scripts written before the command moved into the
gateway's CLI; options, password policy, messages and exit codes are the
same (both run ``gateway.staff.admin_cli``).
"""

from __future__ import annotations

import argparse
import sys

from .admin_cli import DESCRIPTION, add_commands, run

__all__ = ["main"]

_PROG = "python -m gateway.staff"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_PROG, description=f"{DESCRIPTION} Alias of `sanaq-gateway staff`."
    )
    add_commands(parser)
    return run(parser.parse_args(argv), prog=_PROG)


if __name__ == "__main__":
    sys.exit(main())
