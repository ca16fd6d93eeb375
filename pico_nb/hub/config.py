"""The lab server's JupyterHub configuration, as one function both entry points share.

``jupyter_config/jupyterhub_config.py`` calls :func:`configure` (for ``jupyterhub -f``), and
``pico-nb hub`` calls it in-process. Addresses, TLS files, idle culling and folders come from
``PICO_NB_HUB_*`` environment variables (``pico-nb hub`` sets them from its flags); anything
else can be overridden after ``configure`` in a site's own config file.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pico_nb.hub import SERVICE_NAME, SERVICE_URL_ENV
from pico_nb.settings import ENV_PREFIX, load_settings
from pico_nb.shared_files import shared_dir

HUB_ENV_PREFIX = ENV_PREFIX + "HUB_"
DASHBOARD = "dashboard.ipynb"
NOTEBOOKS = shared_dir("notebooks")
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
PROXY_TIMEOUT_MS = 3_600_000
LOG_EXTENSION = "pico_nb.widgets.server"
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


@dataclass(frozen=True)
class HubOptions:
    """What an operator sets for the lab server; each field is PICO_NB_HUB_<NAME>."""

    ip: str = "127.0.0.1"  # public address; 0.0.0.0 to serve the network (then set TLS)
    port: int = 8000  # public port of the proxy
    ssl_cert: str = ""  # TLS certificate (PEM) for a real deployment
    ssl_key: str = ""  # its private key
    hub_port: int = 8081  # the hub's internal API, on 127.0.0.1
    proxy_api_port: int = 8001  # the proxy's internal API, on 127.0.0.1
    service_port: int = 8082  # the pico service, on 127.0.0.1
    cull_idle_seconds: int = 3600  # stop user servers idle this long; 0 never (runs go on)
    state_dir: str = ""  # hub database, cookie secret, user folders; default <data home>/hub
    notebooks: str = str(NOTEBOOKS)  # where dashboard.ipynb (and the tour) are copied from

    @classmethod
    def from_env(cls) -> HubOptions:
        """Read PICO_NB_HUB_* variables, typed like the defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(HUB_ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = int(raw) if isinstance(f.default, int) else raw
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these options in the hub process."""
        return {HUB_ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @property
    def service_url(self) -> str:
        """Where user servers reach the pico service directly (not through the proxy)."""
        return f"http://127.0.0.1:{self.service_port}/services/{SERVICE_NAME}/"

    @property
    def public_url(self) -> str:
        scheme = "https" if self.ssl_cert else "http"
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip
        return f"{scheme}://{host}:{self.port}/"


def _service_environment(state: Path) -> dict[str, str]:
    """PICO_NB_* settings for the service only: the one process holding database credentials.

    Unless the lab names its data roots, each member's folders are their own hub folder (where
    their JupyterLab starts), never the service account's home.
    """
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    env = {k: v for k, v in env.items() if not k.startswith(HUB_ENV_PREFIX)}
    settings = load_settings()
    env[ENV_PREFIX + "HOME"] = str(settings.home)
    if not settings.data_roots:
        env[ENV_PREFIX + "DATA_ROOTS"] = str(state / "users" / "{user}")
    return env


def copy_notebooks(source: Path, home: Path) -> None:
    """Give each user the current dashboard (always refreshed) and other notebooks once."""
    home.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(source.glob("*.ipynb")) if source.is_dir() else ():
        target = home / notebook.name
        if notebook.name == DASHBOARD or not target.exists():
            shutil.copyfile(notebook, target)


def configure(c: Any, options: HubOptions | None = None) -> HubOptions:
    """Fill a JupyterHub config object for the lab server and return the options used."""
    o = options or HubOptions.from_env()
    state = Path(o.state_dir or load_settings().home / "hub")
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    bindir = Path(sys.executable).parent

    c.JupyterHub.ip = o.ip
    c.JupyterHub.port = o.port
    c.JupyterHub.ssl_cert = o.ssl_cert
    c.JupyterHub.ssl_key = o.ssl_key
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = o.hub_port
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{o.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    proxy = shutil.which(
        "configurable-http-proxy", path=f"{bindir}{os.pathsep}{os.environ['PATH']}"
    )
    # The Python proxy buffers each response and gives up after 20 s by default, which cuts the
    # hub's spawn-progress stream while a slow server starts; allow an hour (node's takes it too).
    c.ConfigurableHTTPProxy.command = [
        proxy or "configurable-http-proxy",
        f"--proxy-timeout={PROXY_TIMEOUT_MS}",
    ]

    c.JupyterHub.authenticator_class = "pico_nb.hub.auth.PicoAuthenticator"

    # One JupyterLab server per user, as the hub's own OS user, each in its own folder. For
    # real system users: c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
    # (the hub then runs as root and each server as that user, in their home).
    c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(state / "users" / "{username}")
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    c.Spawner.default_url = f"/voila/render/{DASHBOARD}"  # JupyterLab stays at /lab
    args = [f"--ServerApp.jpserver_extensions={LOG_EXTENSION}=True"]  # the widgets' log download
    if os.geteuid() == 0:  # a hub run as root (a container) runs these servers as root too
        args.append("--allow-root")
    c.Spawner.args = args
    c.Spawner.environment = {SERVICE_URL_ENV: o.service_url}
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", ACCESS_SCOPE]
    c.JupyterHub.extra_user_scopes = {ACCESS_SCOPE}
    notebooks = Path(o.notebooks)

    def pre_spawn_hook(spawner: Any) -> None:
        copy_notebooks(notebooks, Path(spawner.home_dir))

    c.Spawner.pre_spawn_hook = pre_spawn_hook

    services: list[dict[str, Any]] = [
        {
            "name": SERVICE_NAME,
            "display": True,
            "url": f"http://127.0.0.1:{o.service_port}",
            "command": [sys.executable, "-m", "pico_nb.hub.service"],
            "environment": _service_environment(state),
            "oauth_no_confirm": True,
        }
    ]
    roles: list[dict[str, Any]] = []
    if o.cull_idle_seconds > 0:
        services.append(
            {
                "name": "idle-culler",
                "command": [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={o.cull_idle_seconds}",
                    f"--cull-every={max(10, min(300, o.cull_idle_seconds // 2))}",
                ],
            }
        )
        roles.append({"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    return o
