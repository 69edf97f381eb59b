"""The API process's settings (environment variables prefixed CUSTODY_API_).

No secret has a default. Dev-only switches are refused outside development.
"""

from __future__ import annotations

import pathlib
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from node import limits
from node.secretbox import SecretBox, SecretBoxError


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_API_", extra="forbid")

    environment: Literal["development", "production"] = "production"
    database_url: str  # no default: the operator names the database (sqlite:///… or postgresql+psycopg://…)
    database_schema: str | None = None  # PostgreSQL schema holding the tables
    # No default: the key (32 random bytes, base64url, a 0600 file) sealing webhook secrets and
    # stored idempotent responses at rest. `custody api secrets-key --out F` makes one.
    secrets_key_file: pathlib.Path
    # Keys of before a rotation: they only open; values under them are resealed at start.
    previous_secrets_key_files: list[pathlib.Path] = []
    # Prometheus scrapes /metrics with `Authorization: Bearer <token>`; unset = /metrics is off.
    metrics_token: SecretStr | None = None
    # Run the webhook delivery worker in this process (one replica, or all: deliveries are
    # claimed with a lease, so several workers never send one attempt twice at once).
    webhook_worker: bool = True
    webhook_backoff_base_ms: int = limits.WEBHOOK_BACKOFF_BASE_MS
    webhook_attempts_max: int = limits.WEBHOOK_ATTEMPTS_MAX
    # Plain http:// webhook URLs and loopback targets are for development only.
    webhook_allow_insecure_urls: bool = False
    rate_limit_per_s: int = limits.API_RATE_LIMIT_PER_S
    rate_limit_burst: int = limits.API_RATE_LIMIT_BURST_COUNT

    @field_validator("secrets_key_file", "previous_secrets_key_files")
    @classmethod
    def _keys_read(cls, value):
        try:
            for path in value if isinstance(value, list) else [value]:
                SecretBox.from_file(path)
        except SecretBoxError as exc:
            raise ValueError(str(exc)) from None
        return value

    def secret_box(self) -> SecretBox:
        return SecretBox.from_file(self.secrets_key_file, tuple(self.previous_secrets_key_files))

    @model_validator(mode="after")
    def _check(self):
        if self.environment != "development" and self.webhook_allow_insecure_urls:
            raise ValueError("webhook_allow_insecure_urls is a development-only switch")
        if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 16:
            raise ValueError("metrics_token must be at least 16 characters")
        if not 0 < self.webhook_backoff_base_ms <= limits.WEBHOOK_BACKOFF_MAX_MS:
            raise ValueError("webhook_backoff_base_ms out of range")
        if not 0 < self.webhook_attempts_max <= limits.WEBHOOK_ATTEMPTS_MAX:
            raise ValueError(f"webhook_attempts_max must be 1..{limits.WEBHOOK_ATTEMPTS_MAX}")
        if not 0 < self.rate_limit_per_s <= self.rate_limit_burst:
            raise ValueError("need 0 < rate_limit_per_s <= rate_limit_burst")
        return self
