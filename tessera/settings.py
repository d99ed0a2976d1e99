"""One typed settings object, read once from the environment (and `.env` in development)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    env: Environment = Field(default=Environment.development, alias="TESSERA_ENV")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    data_dir: Path = Field(default=ROOT / ".data", alias="TESSERA_DATA_DIR")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="TESSERA_CORS_ORIGINS"
    )
    log_level: str = Field(default="INFO", alias="TESSERA_LOG_LEVEL")
    # Response validation costs CPU on every request; it is a safety net for development and tests.
    validate_responses: bool | None = Field(default=None, alias="TESSERA_VALIDATE_RESPONSES")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, alias="TESSERA_MAX_BODY_BYTES")
    max_url_bytes: int = Field(default=8 * 1024, alias="TESSERA_MAX_URL_BYTES")
    max_header_bytes: int = Field(default=32 * 1024, alias="TESSERA_MAX_HEADER_BYTES")
    max_query_params: int = Field(default=50, alias="TESSERA_MAX_QUERY_PARAMS")
    db_pool_size: int = Field(default=10, alias="TESSERA_DB_POOL_SIZE")
    git_commit: str = Field(default="unknown", alias="TESSERA_GIT_COMMIT")
    build_time: str = Field(default="unknown", alias="TESSERA_BUILD_TIME")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _production_needs_real_services(self) -> Settings:
        if self.env is Environment.production and not self.database_url:
            raise ValueError("DATABASE_URL is required when TESSERA_ENV=production")
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def response_validation(self) -> bool:
        if self.validate_responses is not None:
            return self.validate_responses
        return not self.is_production


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
