"""The lab server's settings: the ``hub`` table of :class:`pico_nb.settings.Settings`.

Addresses, TLS, idle culling, folders (the ``pico-nb hub`` flags) and, in ``hub.login``, the
login throttle of the hub's authenticator. ``single_account`` carries the ``not_in_file``
marker: it comes from a flag or the environment, never from a settings file members might write.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pico_nb.shared_files import shared_dir

NOT_IN_FILE: dict[str, Any] = {"not_in_file": True}


class LoginSettings(BaseModel):
    """The hub's login throttle and whom it believes about addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    free_failures: int = Field(
        5,
        ge=0,
        description="Failed logins for one account before it is locked for a doubling "
        "window (1, 2, 4 … s).",
    )
    free_address_failures: int = Field(
        50,
        ge=0,
        description="Failed logins from one address (any accounts) before that address is locked.",
    )
    max_delay: float = Field(
        60.0,
        gt=0,
        description="Longest lock (seconds) after repeated failures; then one try is checked.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Peers whose `X-Forwarded-For` is believed (the hub's own proxy by "
        "default): the logged and throttled address is the last address such a peer appended; "
        "from any other peer it is the peer itself. `X-Real-Ip` is never believed.",
    )


class HubSettings(BaseModel):
    """The lab server's addresses, TLS, idle culling and folders (`pico-nb hub` flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ip: str = Field(
        "127.0.0.1", description="Public address; `0.0.0.0` serves the network (then use TLS)."
    )
    port: int = Field(8000, ge=1, le=65535, description="Public port of the hub's proxy.")
    ssl_cert: str = Field("", description="TLS certificate file (PEM); empty = plain HTTP.")
    ssl_key: str = Field("", description="TLS private key file (PEM) of the certificate.")
    hub_port: int = Field(
        8081, ge=1, le=65535, description="The hub's internal API port, on 127.0.0.1."
    )
    proxy_api_port: int = Field(
        8001, ge=1, le=65535, description="The proxy's internal API port, on 127.0.0.1."
    )
    service_port: int = Field(
        8082, ge=1, le=65535, description="The pico service's port, on 127.0.0.1."
    )
    cull_idle_seconds: int = Field(
        3600, ge=0, description="Stop user servers idle this long (their runs go on); 0 = never."
    )
    state_dir: str = Field(
        "", description="Hub database, cookie secret and user folders; empty = `<home>/hub`."
    )
    notebooks: str = Field(
        default_factory=lambda: str(shared_dir("notebooks")),
        json_schema_extra={"default_doc": "this installation's `notebooks/`"},
        description="Folder holding `dashboard.ipynb` (and the tour), copied into each "
        "member's folder.",
    )
    single_account: bool = Field(
        False,
        json_schema_extra=NOT_IN_FILE,
        description="Run every member's server as the hub's own account: NO isolation between "
        "members. Only from the flag or the environment, never from a settings file.",
    )
    login: LoginSettings = Field(
        default_factory=lambda: LoginSettings.model_validate({}),
        description="The login throttle (`[hub.login]`).",
    )
