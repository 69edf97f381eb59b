"""THE settings class of the node (pydantic-settings), read from CUSTODY_* environment variables.

Secrets and network identity have no defaults. Development placeholders (anything starting with
"dev-only-", or the well-known test password) are refused unless `environment` is "dev" or
"test". Other areas add their fields here.
"""

from __future__ import annotations

import pathlib
from typing import Literal

import sqlalchemy as sa
from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER_PREFIX = "dev-only-"
_KNOWN_TEST_PASSWORDS = frozenset({"custody_test", "postgres", "password", "changeme"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_", extra="forbid", frozen=True)

    environment: Literal["dev", "test", "prod"] = "prod"
    # Where the node keeps its state; SQLite lives here unless database_url names a server.
    data_dir: pathlib.Path = pathlib.Path(".data")
    # sqlite:///… or postgresql+psycopg://user:password@host/db; empty: <data_dir>/node.db.
    database_url: SecretStr | None = None
    database_schema: str | None = None

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self):
        if self.environment in ("dev", "test"):
            return self
        if self.database_url is not None:
            url = sa.make_url(self.database_url.get_secret_value())
            pw = url.password or ""
            if pw.startswith(DEV_PLACEHOLDER_PREFIX) or pw in _KNOWN_TEST_PASSWORDS:
                raise ValueError("database_url carries a development password: refused outside environment=dev")
        return self

    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'node.db').resolve()}"
