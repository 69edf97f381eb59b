"""Column types for money: integers in base units, stored without loss on both databases.

Wei exceeds 2**64 and SQLite silently turns integers that do not fit 64 bits into floats, even in
INTEGER or NUMERIC columns, so an amount is TEXT (the decimal digits) on SQLite and
NUMERIC(78, 0) on PostgreSQL (78 digits hold any 256-bit unsigned integer). Python sees `int`
on both sides; arithmetic happens in Python, never in SQL on SQLite.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Numeric, Text
from sqlalchemy.types import TypeDecorator

# The largest amount or balance the ledger stores: 10**78 - 1 fits NUMERIC(78, 0) and exceeds
# 2**256 - 1 (the largest ERC-20 amount).
AMOUNT_DIGITS = 78
AMOUNT_MAX = 10**AMOUNT_DIGITS - 1


class Amount(TypeDecorator):
    """A non-negative int in base units: TEXT on SQLite, NUMERIC(78,0) on PostgreSQL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(AMOUNT_DIGITS, 0, asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        # A float or bool here is a programmer error: money never passes through floats.
        assert type(value) is int, f"amount must be int base units, got {type(value).__name__}"
        assert 0 <= value <= AMOUNT_MAX, "amount out of range"
        if dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, Decimal):
            assert value == value.to_integral_value(), "non-integral amount in the database"
            return int(value)
        assert isinstance(value, str), f"amount stored as {type(value).__name__}, expected text"
        return int(value)
