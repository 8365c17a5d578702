"""``python -m idnode``: the same as the ``idnode`` command."""

from idnode.cli import main

main()
