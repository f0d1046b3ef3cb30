"""`python -m ladder.cli` runs the `ladder` command."""

from ladder.cli.main import main

main()
