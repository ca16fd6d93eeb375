"""The pico_nb lab server: `jupyterhub -f jupyter_config/jupyterhub_config.py`.

`pico-nb hub` applies the same configuration by itself. Every default is documented in
pico_nb/hub/config.py (HubOptions): set PICO_NB_HUB_IP, _PORT, _SSL_CERT, _SSL_KEY,
_CULL_IDLE_SECONDS, _STATE_DIR ... in the environment, and PICO_NB_HOME / PICO_NB_DATABASE_URL
for the pico service. Site overrides go below the configure() call, for example:

    c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"  # system users
    c.JupyterHub.authenticator_class = "oauthenticator.GitHubOAuthenticator"  # any other login
"""

from pico_nb.hub.config import configure

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
configure(c)
