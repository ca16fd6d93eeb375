"""`python -m pico_nb.pipeline --data_path IN --out_path OUT [flags]`."""

import sys

from pico_nb.pipeline.run import main

sys.exit(main())
