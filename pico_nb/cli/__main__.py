"""`python -m pico_nb.cli`: the same as the `pico-nb` command."""

import sys

from pico_nb.cli.main import main

sys.exit(main())
