"""``python -m faithmap``: the same as the ``faithmap`` command."""

from faithmap.console import main

main()
