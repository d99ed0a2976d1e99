"""The one settings object: development generates what it lacks, production refuses to start
without real services and secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tessera.core import tokens
from tessera.core.settings import Settings

PRODUCTION = {
    "TESSERA_ENV": "production",
    "DATABASE_URL": "postgresql://tessera@db/tessera",
    "TESSERA_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----…",
    "TESSERA_SECRET_KEY": "s" * 32,
}


def test_production_starts_with_database_signing_key_and_secret():
    assert Settings(**PRODUCTION).is_production


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("DATABASE_URL", "DATABASE_URL"),
        ("TESSERA_SIGNING_KEY", "TESSERA_SIGNING_KEY"),
        ("TESSERA_SECRET_KEY", "TESSERA_SECRET_KEY"),
    ],
)
def test_production_refuses_to_start_without(missing, named, monkeypatch):
    monkeypatch.delenv(missing, raising=False)
    with pytest.raises(ValidationError, match=named):
        Settings(**{k: v for k, v in PRODUCTION.items() if k != missing})


def test_production_refuses_a_short_secret():
    with pytest.raises(ValidationError, match="32"):
        Settings(**{**PRODUCTION, "TESSERA_SECRET_KEY": "short"})


def test_development_generates_a_signing_key_under_the_data_dir_once(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TESSERA_SIGNING_KEYS_DIR", raising=False)
    settings = Settings(TESSERA_ENV="development", TESSERA_DATA_DIR=str(tmp_path))
    first = tokens.Keyring.from_settings(settings)
    (key_file,) = (tmp_path / "keys").glob("*.pem")
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = tokens.Keyring.from_settings(settings)
    assert again.current.kid == first.current.kid  # reused, not regenerated


def test_cors_origins_are_a_comma_separated_list():
    settings = Settings(TESSERA_CORS_ORIGINS="https://a.example, https://b.example,")
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


EVERY_ADDRESS = "0.0.0.0"  # noqa: S104  (what a container listens on)


def test_outside_production_the_public_url_and_issuer_are_the_served_address(monkeypatch):
    for name in ("TESSERA_PUBLIC_URL", "TESSERA_JWT_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(TESSERA_ENV="development", HOST="127.0.0.1", PORT="9123")
    assert settings.public_url == settings.jwt_issuer == "http://127.0.0.1:9123"
    everywhere = Settings(TESSERA_ENV="development", HOST=EVERY_ADDRESS, PORT="9123")
    assert everywhere.public_url == "http://127.0.0.1:9123"
    assert Settings(HOST="::", PORT="9123").public_url == "http://[::1]:9123"


def test_explicit_public_url_and_issuer_win(monkeypatch):
    monkeypatch.delenv("TESSERA_JWT_ISSUER", raising=False)
    settings = Settings(PORT="9123", TESSERA_PUBLIC_URL="https://api.example.com")
    assert settings.public_url == settings.jwt_issuer == "https://api.example.com"
    both = Settings(
        TESSERA_PUBLIC_URL="https://api.example.com", TESSERA_JWT_ISSUER="https://id.example.com"
    )
    assert both.jwt_issuer == "https://id.example.com"


def test_production_does_not_take_its_public_url_from_the_listening_address(monkeypatch):
    for name in ("TESSERA_PUBLIC_URL", "TESSERA_JWT_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(**PRODUCTION, HOST=EVERY_ADDRESS, PORT="9123")
    assert "9123" not in settings.public_url and "9123" not in settings.jwt_issuer
