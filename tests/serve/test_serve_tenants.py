"""API keys: read from a key file or $RECALL_API_KEYS, checked, and each key held to its namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from recall.errors import ConfigError
from recall.serve.tenants import AccessError, Tenants

KEY_A, KEY_B = "sk-acme-0123456789abcdef", "sk-globex-0123456789abcd"


def test_keys_from_a_file_and_from_the_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  {KEY_A}: [acme]\n  {KEY_B}: [globex, shared]\n")
    for tenants in (Tenants.load(path), Tenants.load(env=f"{KEY_A}=acme; {KEY_B}=globex,shared")):
        assert len(tenants) == 2
        assert not tenants.open
        acme, globex = tenants.resolve(f"Bearer {KEY_A}"), tenants.resolve(f"bearer {KEY_B}")
        assert acme.namespace(None) == "acme"
        assert globex.namespace(None) == "globex"
        assert globex.namespace("shared") == "shared"
        with pytest.raises(AccessError) as denied:
            acme.namespace("globex")
        assert denied.value.status == 403
        for header in (None, "", f"Basic {KEY_A}", "Bearer sk-wrong-0123456789abcdef", "Bearer"):
            with pytest.raises(AccessError) as refused:
                tenants.resolve(header)
            assert refused.value.status == 401


def test_no_key_means_open_to_every_namespace() -> None:
    tenants = Tenants.load(env="")
    assert tenants.open
    anyone = tenants.resolve(None)
    assert anyone.namespace(None) == "default"
    assert anyone.namespace("acme") == "acme"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short=acme", "16\\+ characters"),
        (f"{KEY_A}=", "names no namespace"),
        (f"{KEY_A}=Acme", "one written form"),
        ("no-equals-sign-here-at-all", "KEY=ns1,ns2"),
    ],
)
def test_bad_keys_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Tenants.load(env=text)


def test_a_malformed_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("keys: [a, b]\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        Tenants.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Tenants.load(tmp_path / "missing.yaml")


def test_recall_serve_refuses_an_open_server_off_loopback_and_a_taken_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are refused before any model loads (main returns 2 with one line)."""
    import socket

    from recall.cli.main import main

    monkeypatch.delenv("RECALL_API_KEYS", raising=False)
    assert main(["serve", "--memory", str(tmp_path / "m"), "--host", "0.0.0.0"]) == 2
    assert "refusing to bind '0.0.0.0'" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--memory", str(tmp_path / "m"), "--port", str(port)]) == 2
    assert "choose another --port" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing was created
