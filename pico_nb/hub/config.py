"""The lab server's JupyterHub configuration, as one function both entry points share.

``jupyter_config/jupyterhub_config.py`` calls :func:`configure` (for ``jupyterhub -f``), and
``pico-nb hub`` calls it in-process. Addresses, TLS files, idle culling, folders and the login
throttle are the ``hub`` settings (:class:`pico_nb.settings.HubSettings`: ``[hub]`` in the
settings file, ``PICO_NB_HUB_*`` variables, ``pico-nb hub`` flags); anything else can be
overridden after ``configure`` in a site's own config file.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pico_nb.contract.errors import PicoError
from pico_nb.file_modes import private_folder
from pico_nb.hub import SERVICE_NAME, SERVICE_URL_ENV
from pico_nb.hub_settings import HubSettings, LoginSettings
from pico_nb.os_accounts import SERVICE_ACCOUNT, is_root, setup_problem
from pico_nb.settings import ENV_PREFIX, Settings, hub_from_environment, load_settings

HUB_ENV_PREFIX = ENV_PREFIX + "HUB_"
DASHBOARD = "dashboard.ipynb"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
PROXY_TIMEOUT_MS = 3_600_000
PROXY_NAME = "configurable-http-proxy"
PROXY_BIN = Path("lib", "node", "node_modules", ".bin", PROXY_NAME)
LOG_EXTENSION = "pico_nb.widgets.server"
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
AUTHENTICATOR = "PicoAuthenticator"


def service_url(hub: HubSettings) -> str:
    """Where user servers reach the pico service directly (not through the proxy)."""
    return f"http://127.0.0.1:{hub.service_port}/services/{SERVICE_NAME}/"


def public_url(hub: HubSettings) -> str:
    """The address members open, as the announcement prints it."""
    scheme = "https" if hub.ssl_cert else "http"
    host = "127.0.0.1" if hub.ip in ("", "0.0.0.0") else hub.ip
    return f"{scheme}://{host}:{hub.port}/"


def lab_server_settings(**flags: Any) -> Settings:
    """The settings of a lab server this machine can isolate: whether it is single-account
    comes from flags and the environment alone, checked before any data home is read."""
    check_isolation(hub_from_environment(**flags).single_account)
    return load_settings(hub=flags)


def _service_environment(isolated: bool, state: Path, settings: Settings) -> dict[str, str]:
    """PICO_NB_* settings for the service only: the one process holding database credentials.

    Unless the lab names its data roots, each member's folders are their own: under member
    accounts the per-member default of the settings, in a single-account hub their hub folder
    (where their JupyterLab starts), never the service account's home.
    """
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    env = {k: v for k, v in env.items() if not k.startswith(HUB_ENV_PREFIX)}
    env[ENV_PREFIX + "HOME"] = str(settings.home)
    if isolated:
        env[ENV_PREFIX + "MEMBER_ACCOUNTS"] = "true"
    elif not settings.data_roots:
        env[ENV_PREFIX + "DATA_ROOTS"] = str(state / "users" / "{user}")
    return env


def proxy_command() -> str:
    """The Node configurable-http-proxy that scripts/install.sh puts beside the venv, else one
    on PATH (a site's global `npm install -g configurable-http-proxy`)."""
    local = Path(sys.prefix) / PROXY_BIN
    return str(local) if local.exists() else shutil.which(PROXY_NAME) or PROXY_NAME


def copy_notebooks(source: Path, home: Path, owner: tuple[int, int] | None = None) -> None:
    """Give each user the current dashboard (always refreshed) and other notebooks once; a hub
    running as root hands the copies to the member's account."""
    home.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(source.glob("*.ipynb")) if source.is_dir() else ():
        target = home / notebook.name
        if notebook.name == DASHBOARD or not target.exists():
            shutil.copyfile(notebook, target)
            if owner is not None:
                os.chown(target, *owner)


def check_isolation(single_account: bool) -> None:
    """Refuse an isolated lab server this machine cannot give; say how to set it up."""
    if single_account:
        return
    # not root: say so before reading settings in a data home this account may not enter
    problem = setup_problem(load_settings().home if is_root() else None)
    if problem:
        raise PicoError(
            f"{problem}: set it up with `sudo pico-nb hub-setup` and start `pico-nb hub` as "
            "root, or start with --single-account (no isolation between members)"
        )


def configure(c: Any, settings: Settings | None = None) -> Settings:
    """Fill a JupyterHub config object for the lab server and return the settings used."""
    settings = settings or lab_server_settings()  # isolation checked before anything is made
    o = settings.hub
    state = Path(o.state_dir or settings.home / "hub")
    private_folder(state)

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
    # JupyterHub's production proxy (Node), which streams responses and server-sent events as
    # they come and has no cap on concurrent requests. An idle upstream may wait an hour: a
    # slow server's spawn progress and a quiet log stream must not be cut.
    c.ConfigurableHTTPProxy.command = [proxy_command(), f"--proxy-timeout={PROXY_TIMEOUT_MS}"]

    c.JupyterHub.authenticator_class = f"pico_nb.hub.auth.{AUTHENTICATOR}"
    for name in LoginSettings.model_fields:  # the traitlets' values, still a site's to override
        c[AUTHENTICATOR][name] = getattr(o.login, name)

    # One JupyterLab server per member, as their own OS account pico-<name>, in its home; only
    # with --single-account all of them run as the hub's own account, each in a folder of state.
    isolated = not o.single_account
    args = [
        f"--ServerApp.jpserver_extensions={LOG_EXTENSION}=True",  # the widgets' log download
        "--LabApp.expose_app_in_browser=True",  # a run's end as JupyterLab's own notification
    ]
    if isolated:
        c.JupyterHub.spawner_class = "pico_nb.hub.spawner.MemberSpawner"
    else:
        c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
        c.SimpleLocalProcessSpawner.home_dir_template = str(state / "users" / "{username}")
        if os.geteuid() == 0:  # a single-account hub run as root runs these servers as root
            args.append("--allow-root")
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    c.Spawner.default_url = f"/voila/render/{DASHBOARD}"  # JupyterLab stays at /lab
    c.Spawner.args = args
    c.Spawner.environment = {SERVICE_URL_ENV: service_url(o)}
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", ACCESS_SCOPE]
    c.JupyterHub.extra_user_scopes = {ACCESS_SCOPE}
    notebooks = Path(o.notebooks)

    def pre_spawn_hook(spawner: Any) -> None:
        if not isolated:
            copy_notebooks(notebooks, Path(spawner.home_dir))
            return
        account = spawner.account()
        copy_notebooks(notebooks, Path(account.pw_dir), (account.pw_uid, account.pw_gid))

    c.Spawner.pre_spawn_hook = pre_spawn_hook

    services: list[dict[str, Any]] = [
        {
            "name": SERVICE_NAME,
            "display": True,
            "url": f"http://127.0.0.1:{o.service_port}",
            "command": [sys.executable, "-m", "pico_nb.hub.service"],
            "environment": _service_environment(isolated, state, settings),
            "oauth_no_confirm": True,
        }
    ]
    if isolated:  # the only account that can open the database, the logs and the data home
        services[0]["user"] = SERVICE_ACCOUNT
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
    return settings
