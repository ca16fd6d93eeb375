"""What the app and the built-in pipeline share, and the only app code the pipeline imports.

The errors, the limits every value keeps, the parameter spec (read from `pico_spec.toml`)
and input-movie discovery. Nothing here imports pydantic, SQLAlchemy or any other part of
pico_nb, so the pipeline stays a separate program that starts fast.
"""
