"""The `ladder` command line."""
