"""``python -m aether`` runs the ``aether`` command."""

from aether.cli.main import main

main()
