"""Where the dashboard notebooks and the Jupyter config live, in a checkout or installed.

A checkout keeps them beside the package (``notebooks/``, ``jupyter_config/``); a wheel
installs them under ``<prefix>/share/pico-nb/``, the prefix being the one the package itself
went to (a virtualenv, ``--user``, ``--prefix``), so both find them without configuration.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shared_dir(name: str) -> Path:
    """The folder ``name`` ("notebooks" or "jupyter_config") of this installation."""
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    prefix = _PACKAGE.parents[3]  # the package is <prefix>/lib/pythonX.Y/site-packages/pico_nb
    return prefix / "share" / "pico-nb" / name
