"""The built-in PICO pipeline: a CPU calcium-imaging pipeline run as `python -m pico_nb.pipeline`."""
