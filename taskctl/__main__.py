"""`python -m taskctl`."""

from taskctl.cli import main

main()
