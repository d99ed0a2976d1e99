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
