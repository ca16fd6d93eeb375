"""One settings system: the hub's options are settings, documented once, from the same sources."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from pico_nb.contract.errors import PicoError, ValidationError
from pico_nb.hub.auth import PicoAuthenticator
from pico_nb.hub.config import configure, lab_server_settings, public_url, service_url
from pico_nb.hub.launch import add_commands
from pico_nb.hub_settings import LoginSettings
from pico_nb.settings import Settings, hub_from_environment, load_settings, setting_fields
from pico_nb.settings_docs import default_text, updated

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def _no_pico_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the machine's own PICO_NB_* variables stay out."""
    for name in [n for n in os.environ if n.startswith("PICO_NB_")]:
        monkeypatch.delenv(name)


def hub_parser() -> argparse.ArgumentParser:
    """`pico-nb hub` as the CLI registers it."""
    parser = argparse.ArgumentParser(prog="pico-nb")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_the_readme_settings_tables_are_generated_from_the_fields() -> None:
    text = README.read_text("utf-8")
    assert updated(text) == text, "run: python -m pico_nb.settings_docs --update README.md"
    for field in setting_fields():  # every setting, the slurm_* and hub.login.* ones too
        assert f"| `{field.name}` | `{field.env}` |" in text


def test_the_check_mode_fails_on_a_stale_table(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    stale.write_text("# x\n<!-- settings: hub -->\n| old |\n<!-- /settings -->\n")
    command = [sys.executable, "-m", "pico_nb.settings_docs"]
    answer = subprocess.run([*command, "--check", str(stale)], capture_output=True, text=True)
    assert answer.returncode == 1 and "out of date" in answer.stderr
    subprocess.run([*command, "--update", str(stale)], check=True)
    assert "`PICO_NB_HUB_PORT`" in stale.read_text()
    assert subprocess.run([*command, "--check", str(stale)]).returncode == 0


def test_hub_settings_come_from_the_file_the_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pico_nb.toml").write_text(
        '[hub]\nip = "10.0.0.1"\nport = 8443\n[hub.login]\nmax_delay = 30.0\n'
    )
    monkeypatch.setenv("PICO_NB_HUB_PORT", "9443")
    monkeypatch.setenv("PICO_NB_HUB_HUB_PORT", "9081")
    monkeypatch.setenv("PICO_NB_HUB_LOGIN_TRUSTED_PROXIES", "10.0.0.2, 10.0.0.3")
    hub = load_settings(tmp_path).hub
    assert (hub.ip, hub.port, hub.hub_port, hub.cull_idle_seconds) == ("10.0.0.1", 9443, 9081, 3600)
    assert hub.login.max_delay == 30.0 and hub.login.trusted_proxies == ["10.0.0.2", "10.0.0.3"]
    assert hub.login.free_failures == 5  # [hub.login] keeps the keys it does not name
    flagged = load_settings(tmp_path, hub={"port": 443, "ssl_cert": "cert.pem"}).hub
    assert (flagged.ip, flagged.port, flagged.hub_port) == ("10.0.0.1", 443, 9081)
    assert public_url(flagged) == "https://10.0.0.1:443/"
    assert service_url(flagged) == "http://127.0.0.1:8082/services/pico/"


def test_a_bad_hub_setting_names_its_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICO_NB_HUB_LOGIN_FREE_FAILURES", "many")
    with pytest.raises(ValidationError) as info:
        load_settings(tmp_path)
    assert list(info.value.errors) == ["hub.login.free_failures"]
    monkeypatch.delenv("PICO_NB_HUB_LOGIN_FREE_FAILURES")
    with pytest.raises(ValidationError) as info:
        hub_from_environment(port=0)
    assert list(info.value.errors) == ["hub.port"]


def test_single_account_mode_is_never_taken_from_a_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pico_nb.toml").write_text("[hub]\nsingle_account = true\n")
    with pytest.raises(ValidationError) as info:
        load_settings(tmp_path)
    message = info.value.errors["hub.single_account"]
    assert "PICO_NB_HUB_SINGLE_ACCOUNT" in message and "never in" in message
    monkeypatch.setenv("PICO_NB_HOME", str(tmp_path))
    assert hub_from_environment().single_account is False  # the file is not even read
    monkeypatch.setenv("PICO_NB_HUB_SINGLE_ACCOUNT", "true")
    assert hub_from_environment().single_account is True
    assert hub_from_environment(single_account=True, port=8001).port == 8001


def test_the_hub_decides_isolation_before_it_reads_a_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub that is not root refuses without reading a data home it may not enter."""
    (tmp_path / "pico_nb.toml").write_text("not toml at all [")
    monkeypatch.setenv("PICO_NB_HOME", str(tmp_path))
    monkeypatch.setattr("pico_nb.hub.config.is_root", lambda: False)
    monkeypatch.setattr("pico_nb.hub.config.setup_problem", lambda home: "must start as root")
    with pytest.raises(PicoError, match="must start as root"):
        lab_server_settings(port=8000)
    with pytest.raises(ValidationError, match="not valid TOML"):
        lab_server_settings(single_account=True)  # single-account: now the file is read


def test_hub_flags_take_their_help_and_defaults_from_the_fields() -> None:
    parser = hub_parser()
    args = parser.parse_args(["hub", "--port", "443", "--single-account"])
    assert (args.port, args.single_account, args.ip) == (443, True, None)
    help_text = " ".join(
        subprocess.run(
            [sys.executable, "-m", "pico_nb.hub.launch", "hub", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    for field in setting_fields():
        if len(field.path) == 2 and field.path[0] == "hub":
            assert field.env in help_text
            assert f"Default {default_text(field)};" in help_text
            assert " ".join(str(field.info.description).split()) in help_text


def test_the_authenticator_s_traitlets_are_the_login_settings(tmp_path: Path) -> None:
    defaults = LoginSettings.model_validate({})
    for name, info in LoginSettings.model_fields.items():
        trait = PicoAuthenticator.class_traits()[name]
        assert trait.default() == getattr(defaults, name)
        assert str(info.description) in trait.help
    settings = load_settings(
        tmp_path,
        hub={"state_dir": str(tmp_path / "state"), "login": {"max_delay": 7.0}, "port": 8443},
    )
    config = Config()
    assert configure(config, settings) is settings
    assert config.JupyterHub.port == 8443
    assert config.PicoAuthenticator.max_delay == 7.0
    assert config.PicoAuthenticator.trusted_proxies == ["127.0.0.1", "::1"]
    assert PicoAuthenticator(config=config).policy.max_delay == 7.0


def test_settings_with_hub_options_travel_to_supervisors_as_json(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, hub={"port": 8443, "login": {"free_failures": 2}})
    again = Settings.model_validate_json(settings.model_dump_json())
    assert again.hub == settings.hub


def test_an_empty_pipeline_spec_is_the_built_in_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As documented: a service file's `PICO_NB_PIPELINE_SPEC=` means the built-in pipeline."""
    monkeypatch.setenv("PICO_NB_PIPELINE_SPEC", "")
    assert load_settings(tmp_path).pipeline_spec is None
    assert load_settings(tmp_path, pipeline_spec="  ").pipeline_spec is None


def test_a_live_log_url_must_be_redis_with_its_client_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Said at start, naming the setting: not a 500 on the first follow, nor logs silently off."""
    assert load_settings(tmp_path, log_stream_url="redis://127.0.0.1:6379/3").log_stream_url
    with pytest.raises(ValidationError) as info:
        load_settings(tmp_path, log_stream_url="http://127.0.0.1:6379")
    assert "redis://" in info.value.errors["log_stream_url"]
    monkeypatch.setitem(sys.modules, "redis", None)  # as on a machine without the extra
    with pytest.raises(ValidationError) as info:
        load_settings(tmp_path, log_stream_url="redis://127.0.0.1:6379/3")
    assert "pico-nb[distributed]" in info.value.errors["log_stream_url"]
