"""One typed settings object, read once from the environment (and `.env` in development)."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where the contract (openapi/) and migrations/ live: the source tree, or TESSERA_HOME when the
# package is installed elsewhere (the container image).
ROOT = Path(os.environ.get("TESSERA_HOME") or Path(__file__).resolve().parents[2])


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


# What TESSERA_PUBLIC_URL and TESSERA_JWT_ISSUER fall back to in production, as they always have
# (the deployment files set both).
PRODUCTION_PUBLIC_URL = "http://127.0.0.1:8080"


def listen_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches a server listening on host:port with."""
    if host in ("", "0.0.0.0"):  # noqa: S104  (a comparison: listening everywhere)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


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
    # OpenTelemetry spans per request (tessera/core/tracing.py): `otlp` exports to the collector
    # named by the standard OTEL_EXPORTER_OTLP_* variables, `console` prints them,
    # `off` costs nothing.
    tracing: Literal["off", "otlp", "console"] = Field(default="off", alias="TESSERA_TRACING")
    # `tessera worker` serves its own /metrics here (job outcomes live in the worker process).
    worker_metrics_port: int | None = Field(default=None, alias="TESSERA_WORKER_METRICS_PORT")
    worker_metrics_host: str = Field(default="127.0.0.1", alias="TESSERA_WORKER_METRICS_HOST")
    # Response validation costs CPU on every request; it is a safety net for development and tests.
    validate_responses: bool | None = Field(default=None, alias="TESSERA_VALIDATE_RESPONSES")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, alias="TESSERA_MAX_BODY_BYTES")
    max_url_bytes: int = Field(default=8 * 1024, alias="TESSERA_MAX_URL_BYTES")
    max_header_bytes: int = Field(default=32 * 1024, alias="TESSERA_MAX_HEADER_BYTES")
    max_query_params: int = Field(default=50, alias="TESSERA_MAX_QUERY_PARAMS")
    # Connections kept open per worker (plus half as many overflow ones). Size it for the
    # requests in flight: past it, SQLAlchemy opens overflow connections and closes them on
    # return, and a new PostgreSQL backend per request (fork + authentication) costs more than
    # the query (`make bench` saw it at 32 connections with a pool of 10).
    db_pool_size: int = Field(default=20, alias="TESSERA_DB_POOL_SIZE")
    # Tokens. Signing keys: a directory of PEM private keys named <kid>.pem (the newest signs,
    # the others still verify) or one PEM in TESSERA_SIGNING_KEY. Development generates one.
    signing_keys_dir: Path | None = Field(default=None, alias="TESSERA_SIGNING_KEYS_DIR")
    signing_key: str | None = Field(default=None, alias="TESSERA_SIGNING_KEY", repr=False)
    # Derives successor refresh tokens and other server-side MACs; required in production.
    secret_key: str | None = Field(default=None, alias="TESSERA_SECRET_KEY", repr=False)
    # The `iss` of every token and the base of the OAuth metadata's URLs; TESSERA_PUBLIC_URL when
    # unset.
    jwt_issuer: str = Field(default="", alias="TESSERA_JWT_ISSUER")
    jwt_audience: str = Field(default="tessera-api", alias="TESSERA_JWT_AUDIENCE")
    access_token_ttl_s: int = Field(default=900, alias="TESSERA_ACCESS_TOKEN_TTL")
    refresh_token_ttl_s: int = Field(default=30 * 86400, alias="TESSERA_REFRESH_TOKEN_TTL")
    refresh_overlap_s: float = Field(default=10.0, alias="TESSERA_REFRESH_OVERLAP")
    session_cache_s: float = Field(default=2.0, alias="TESSERA_SESSION_CACHE_SECONDS")
    # Passwords: argon2id with OWASP's parameters.
    argon2_memory_kib: int = Field(default=19 * 1024, alias="TESSERA_ARGON2_MEMORY_KIB")
    argon2_time_cost: int = Field(default=2, alias="TESSERA_ARGON2_TIME_COST")
    argon2_parallelism: int = Field(default=1, alias="TESSERA_ARGON2_PARALLELISM")
    password_min_length: int = Field(default=12, ge=8, alias="TESSERA_PASSWORD_MIN_LENGTH")
    lockout_threshold: int = Field(default=5, ge=1, alias="TESSERA_LOCKOUT_THRESHOLD")
    lockout_seconds: int = Field(default=900, ge=1, alias="TESSERA_LOCKOUT_SECONDS")
    require_email_verification: bool = Field(
        default=False, alias="TESSERA_REQUIRE_EMAIL_VERIFICATION"
    )
    # Rate limits: requests per minute per principal by tier, scaled per kind of operation.
    rate_limit_enabled: bool = Field(default=True, alias="TESSERA_RATE_LIMIT_ENABLED")
    rate_limit_tiers: dict[str, int] = Field(
        default={"free": 30, "basic": 60, "pro": 120, "enterprise": 300},
        alias="TESSERA_RATE_LIMIT_TIERS",
    )
    rate_limit_default_tier: str = Field(default="pro", alias="TESSERA_RATE_LIMIT_DEFAULT_TIER")
    rate_limit_multipliers: dict[str, float] = Field(
        default={"read": 1.0, "write": 0.5, "delete": 0.25},
        alias="TESSERA_RATE_LIMIT_MULTIPLIERS",
    )
    # Unauthenticated endpoints, per client IP per minute (password reset: per email per hour).
    rate_limit_login_per_ip: int = Field(default=5, alias="TESSERA_RATE_LIMIT_LOGIN")
    rate_limit_register_per_ip: int = Field(default=3, alias="TESSERA_RATE_LIMIT_REGISTER")
    rate_limit_anonymous_per_ip: int = Field(default=60, alias="TESSERA_RATE_LIMIT_ANONYMOUS")
    rate_limit_password_reset_per_email: int = Field(
        default=3, alias="TESSERA_RATE_LIMIT_PASSWORD_RESET"
    )
    # Webhooks: private, loopback and link-local targets are refused unless allowed (SSRF);
    # allowed by default outside production so local receivers work in development and tests.
    webhook_allow_private_targets: bool | None = Field(
        default=None, alias="TESSERA_WEBHOOK_ALLOW_PRIVATE"
    )
    webhook_timeout_s: float = Field(default=10.0, alias="TESSERA_WEBHOOK_TIMEOUT")
    webhook_max_retries: int = Field(default=14, alias="TESSERA_WEBHOOK_MAX_RETRIES")
    webhook_min_backoff_ms: int = Field(default=30_000, alias="TESSERA_WEBHOOK_MIN_BACKOFF_MS")
    webhook_max_backoff_ms: int = Field(
        default=6 * 3600 * 1000, alias="TESSERA_WEBHOOK_MAX_BACKOFF_MS"
    )
    webhook_disable_after_failures: int = Field(default=5, alias="TESSERA_WEBHOOK_DISABLE_AFTER")
    # The outbox relay wakes on NOTIFY when a writer commits; this poll is only its fallback (and
    # how often it retries while the broker is down).
    outbox_poll_s: float = Field(default=1.0, gt=0, alias="TESSERA_OUTBOX_POLL_SECONDS")
    # Prefix of every key Tessera keeps in Redis (job queues, rate limits): deployments (or test
    # runs) sharing one Redis must differ here, or their workers take each other's jobs and drop
    # them as unknown.
    queue_namespace: str = Field(
        default="tessera", pattern=r"^[A-Za-z0-9_.-]{1,64}$", alias="TESSERA_QUEUE_NAMESPACE"
    )
    audit_retention_days: int = Field(default=90, alias="TESSERA_AUDIT_RETENTION_DAYS")
    idempotency_ttl_s: int = Field(default=24 * 3600, alias="TESSERA_IDEMPOTENCY_TTL")
    # Retention purges (audit log, idempotency keys, revoked tokens, email tokens) run this often
    # in every worker; concurrent runs serialise on an advisory lock.
    maintenance_interval_s: float = Field(
        default=3600.0, gt=0, alias="TESSERA_MAINTENANCE_INTERVAL"
    )
    # Email: SMTP when TESSERA_SMTP_HOST is set; otherwise (development) every message is written
    # as an .eml file under <data_dir>/mail/. Links in messages start with TESSERA_PUBLIC_URL;
    # unset outside production, it is the address `tessera serve` listens on (HOST and PORT).
    public_url: str = Field(default="", alias="TESSERA_PUBLIC_URL")
    listen_host: str = Field(default="127.0.0.1", alias="HOST")
    listen_port: int = Field(default=8080, alias="PORT")
    smtp_host: str | None = Field(default=None, alias="TESSERA_SMTP_HOST")
    smtp_port: int = Field(default=587, alias="TESSERA_SMTP_PORT")  # 465 means implicit TLS
    smtp_username: str | None = Field(default=None, alias="TESSERA_SMTP_USERNAME")
    smtp_password: str | None = Field(default=None, alias="TESSERA_SMTP_PASSWORD", repr=False)
    smtp_starttls: bool = Field(default=True, alias="TESSERA_SMTP_STARTTLS")
    smtp_from: str = Field(default="Tessera <no-reply@localhost>", alias="TESSERA_SMTP_FROM")
    smtp_timeout_s: float = Field(default=10.0, alias="TESSERA_SMTP_TIMEOUT")
    # Verification and email-change mails a signed-in user may trigger per hour.
    rate_limit_account_mail_per_user: int = Field(
        default=10, alias="TESSERA_RATE_LIMIT_ACCOUNT_MAIL"
    )
    # Files (models/files): bytes under <data_dir>/files unless an S3 bucket is named; any
    # S3-compatible store works (TESSERA_FILES_S3_ENDPOINT for one that is not AWS).
    files_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0, alias="TESSERA_FILES_MAX_BYTES")
    # Smaller limits for some purposes (JSON: purpose -> bytes).
    files_max_bytes_per_purpose: dict[str, int] = Field(
        default={"avatar": 5 * 1024 * 1024}, alias="TESSERA_FILES_MAX_BYTES_PER_PURPOSE"
    )
    # Per purpose, the media types an upload may have (`type/*` for a whole family).
    files_allowed_types: dict[str, list[str]] = Field(
        default={
            "attachment": [
                "image/*",
                "text/plain",
                "text/csv",
                "application/json",
                "application/pdf",
                "application/zip",
                "application/octet-stream",
            ],
            "avatar": ["image/png", "image/jpeg", "image/webp", "image/gif"],
            "import": [
                "text/csv",
                "application/json",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ],
        },
        alias="TESSERA_FILES_ALLOWED_TYPES",
    )
    files_s3_bucket: str | None = Field(default=None, alias="TESSERA_FILES_S3_BUCKET")
    files_s3_endpoint: str | None = Field(default=None, alias="TESSERA_FILES_S3_ENDPOINT")
    files_s3_region: str | None = Field(default=None, alias="TESSERA_FILES_S3_REGION")
    files_s3_access_key: str | None = Field(default=None, alias="TESSERA_FILES_S3_ACCESS_KEY")
    files_s3_secret_key: str | None = Field(
        default=None, alias="TESSERA_FILES_S3_SECRET_KEY", repr=False
    )
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
        if self.env is Environment.production:
            if not self.database_url:
                raise ValueError("DATABASE_URL is required when TESSERA_ENV=production")
            if not (self.signing_keys_dir or self.signing_key):
                raise ValueError("TESSERA_SIGNING_KEYS_DIR or TESSERA_SIGNING_KEY is required")
            if not self.secret_key or len(self.secret_key) < 32:
                raise ValueError("TESSERA_SECRET_KEY (32+ characters) is required")
        return self

    @model_validator(mode="after")
    def _public_addresses(self) -> Settings:
        if not self.public_url:
            # Production is told its public address (behind a proxy the listening address says
            # nothing); elsewhere the server is reached where it listens.
            self.public_url = (
                PRODUCTION_PUBLIC_URL
                if self.is_production
                else listen_url(self.listen_host, self.listen_port)
            )
        if not self.jwt_issuer:
            self.jwt_issuer = self.public_url
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def allow_private_webhooks(self) -> bool:
        if self.webhook_allow_private_targets is not None:
            return self.webhook_allow_private_targets
        return not self.is_production

    @property
    def response_validation(self) -> bool:
        if self.validate_responses is not None:
            return self.validate_responses
        return not self.is_production


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
