"""The JupyterHub front end: the pico service (REST API over Lab), its client, the authenticator."""

from __future__ import annotations

import os

SERVICE_NAME = "pico"
SERVICE_URL_ENV = "PICO_NB_SERVICE_URL"
API_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"


def in_user_server() -> bool:
    """True inside a hub user server, where Lab must talk to the pico service, not the database."""
    return bool(os.environ.get(SERVICE_URL_ENV) and os.environ.get(API_TOKEN_ENV))
