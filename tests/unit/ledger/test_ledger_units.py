"""Pure functions of the ledger area, table-driven: fees, amount column binding, journal
hashing, settings."""

from __future__ import annotations

import pytest

from node import audit
from node.customers import Fee


@pytest.mark.parametrize(
    "fee,amount,expected",
    [
        (Fee(), 1_000, 0),
        (Fee(fixed=25), 1_000, 25),
        (Fee(rate_ppm=2_500), 40_000, 100),  # 0.25 %
        (Fee(rate_ppm=2_500), 1, 1),  # rounded up: never a fraction of a unit
        (Fee(rate_ppm=2_500), 399, 1),
        (Fee(rate_ppm=2_500), 401, 2),
        (Fee(fixed=10, rate_ppm=1_000, minimum=50), 1_000, 50),
        (Fee(fixed=10, rate_ppm=1_000, maximum=20), 10**30, 20),
        (Fee(rate_ppm=1), 10**77, 10**71),  # wei-sized amounts stay exact
    ],
)
def test_fee(fee, amount, expected):
    assert fee.on(amount) == expected


@pytest.mark.parametrize(
    "kwargs",
    [{"fixed": -1}, {"rate_ppm": 1_000_001}, {"minimum": 5, "maximum": 4}, {"fixed": 1.5}, {"rate_ppm": 0.1}],
)
def test_fee_refuses_bad_values(kwargs):
    with pytest.raises(ValueError):
        Fee(**kwargs)


class _Dialect:
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize(
    "dialect,value,bound",
    [("sqlite", 2**200, str(2**200)), ("sqlite", 0, "0"), ("postgresql", 2**255, 2**255)],
)
def test_amount_binds_without_loss(dialect, value, bound):
    from node.store.types import Amount

    a = Amount()
    assert a.process_bind_param(value, _Dialect(dialect)) == bound
    from decimal import Decimal

    stored = Decimal(bound) if dialect == "postgresql" else bound
    back = a.process_result_value(stored, _Dialect(dialect))
    assert back == value and type(back) is int


@pytest.mark.parametrize("bad", [1.0, True, -1, 10**78])
def test_amount_refuses_floats_and_out_of_range_as_programmer_errors(bad):
    from node.store.types import Amount

    with pytest.raises(AssertionError):
        Amount().process_bind_param(bad, _Dialect("sqlite"))


def test_entry_hash_covers_every_field():
    base = ("0" * 64, 1, 10, "alice", "transfers.create", '{"a":1}')
    h = audit.entry_hash(*base)
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + 1 if isinstance(changed[i], int) else changed[i] + "x"
        assert audit.entry_hash(*changed) != h, f"field {i} is not covered by the hash"


def test_canonical_json_refuses_floats_nan():
    assert audit.canonical_json({"b": 1, "a": ["x", None]}) == '{"a":["x",null],"b":1}'
    with pytest.raises(ValueError):
        audit.canonical_json({"x": float("nan")})


@pytest.mark.parametrize(
    "env,ok",
    [
        ({"CUSTODY_ENVIRONMENT": "prod", "CUSTODY_DATABASE_URL": "postgresql+psycopg://u:custody_test@h/db"}, False),
        ({"CUSTODY_ENVIRONMENT": "prod", "CUSTODY_DATABASE_URL": "postgresql+psycopg://u:dev-only-pw@h/db"}, False),
        ({"CUSTODY_ENVIRONMENT": "dev", "CUSTODY_DATABASE_URL": "postgresql+psycopg://u:dev-only-pw@h/db"}, True),
        ({"CUSTODY_ENVIRONMENT": "prod", "CUSTODY_DATABASE_URL": "postgresql+psycopg://u:Zq8-long-random@h/db"}, True),
        ({"CUSTODY_ENVIRONMENT": "prod"}, True),  # SQLite in the data dir: no secret involved
    ],
)
def test_settings_refuse_dev_placeholders_outside_dev(monkeypatch, env, ok):
    from pydantic import ValidationError

    from node.config import Settings

    for k in ("CUSTODY_ENVIRONMENT", "CUSTODY_DATABASE_URL", "CUSTODY_DATA_DIR"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if ok:
        s = Settings()
        assert "Zq8" not in repr(s) and "dev-only" not in repr(s)  # the URL is a secret
    else:
        with pytest.raises(ValidationError, match="development password"):
            Settings()


def test_settings_default_database_is_sqlite_in_the_data_dir(monkeypatch, tmp_path):
    from node.config import Settings

    monkeypatch.delenv("CUSTODY_DATABASE_URL", raising=False)
    monkeypatch.setenv("CUSTODY_DATA_DIR", str(tmp_path))
    assert Settings().resolved_database_url() == f"sqlite:///{tmp_path.resolve()}/node.db"
