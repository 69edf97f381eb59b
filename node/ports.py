"""The ports the adapters implement. node/ depends on these Protocols only; mpc/ and chains/
implement them and are wired together by the composition root (api/)."""

from __future__ import annotations
