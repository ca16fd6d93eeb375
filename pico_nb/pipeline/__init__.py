"""The built-in PICO pipeline: CPU calcium imaging, run as `python -m pico_nb.pipeline`."""
