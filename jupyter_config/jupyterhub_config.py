"""The pico_nb lab server: `jupyterhub -f jupyter_config/jupyterhub_config.py`.

`pico-nb hub` applies the same configuration by itself. The options are the `hub` settings
(README, "Lab server": `[hub]` in pico_nb.toml or PICO_NB_HUB_IP, _PORT, _SSL_CERT, _SSL_KEY,
_CULL_IDLE_SECONDS, _STATE_DIR ... in the environment), beside PICO_NB_HOME /
PICO_NB_DATABASE_URL for the pico service. Run it as root after `pico-nb hub-setup` and
`pico-nb users add`: each member's server runs as their OS account pico-<name>
(PICO_NB_HUB_SINGLE_ACCOUNT=true runs all as this account, without isolation). Site
overrides go below the configure() call, e.g.:

    c.JupyterHub.authenticator_class = "oauthenticator.GitHubOAuthenticator"  # any other login
"""

from pico_nb.hub.config import configure

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
configure(c)
