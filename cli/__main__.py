"""`python -m cli` runs the `ladder` command."""

from cli.main import main

main()
