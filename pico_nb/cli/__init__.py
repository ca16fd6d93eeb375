"""The `pico-nb` command line: every Lab operation, with one-line errors and stable --json."""
