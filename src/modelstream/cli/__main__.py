"""``python -m modelstream.cli``: the same as the ``modelstream`` console script."""

from modelstream.cli.app import main

main()
