"""proofs.jcs agrees with the rfc8785 package (RFC 8785) on the values a header holds."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import jcs

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_matches_rfc8785(value):
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(jcs.NotCanonicalisable):
            jcs.dumps(value)
        return
    assert jcs.dumps(value) == expected


@pytest.mark.parametrize("bad", [1.5, 2**53, {"a": float("nan")}, {1: "x"}, "\ud800"])
def test_refuses(bad):
    with pytest.raises(jcs.NotCanonicalisable):
        jcs.dumps(bad)
