"""``python -m faithmap``: the same as the ``faithmap`` command."""

from faithmap.cli import main

main()
