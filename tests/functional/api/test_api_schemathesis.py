"""schemathesis against /openapi.json of a real `custody api serve` process: generated requests
(valid and invalid) for every operation, each properly signed, find no 5xx and no response
that breaks the document (status codes, content types, schemas). Bounded: a fixed number of
examples per operation, derandomised so that a failure reproduces."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from api_helpers import fund
from api_procs import bootstrap_key, start_api
from hypothesis import HealthCheck, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.client import CustodyClient, load_private_key
from api.signing import sign_request
from node.store import open_store

pytestmark = pytest.mark.functional

EXAMPLES_PER_OPERATION = 25


class SignedAuth(requests.auth.AuthBase):
    """Signs the prepared request: the exact path?query and body bytes that go on the wire."""

    def __init__(self, key_id, private_key):
        self.key_id = key_id
        self.private_key = private_key

    def __call__(self, r):
        import secrets
        import time

        body = r.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        ts = str(time.time_ns() // 1_000_000)
        nonce = secrets.token_urlsafe(18)
        r.headers.update(
            {
                "X-Api-Key": self.key_id,
                "X-Timestamp": ts,
                "X-Nonce": nonce,
                "X-Signature": sign_request(self.private_key, r.method, r.path_url, ts, nonce, body),
            }
        )
        return r


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{tmp / 'node.db'}"
    store = open_store(url)
    key_id, pem = bootstrap_key(tmp, url, "read,deposit,withdraw,approve,admin")
    # Rate limits high enough not to throttle the generator (429 is documented anyway).
    proc, api_url = start_api(tmp, url, rate_limit_per_s=10_000, rate_limit_burst=10_000, webhook_worker="false")
    c = CustodyClient(api_url, key_id, load_private_key(pem))
    c.create_customer("acme", "Acme")
    c.create_customer("beta", "Beta")
    fund(store, "acme.main", "USD", 1_000_000, "dep-1")
    store.dispose()
    session = requests.Session()
    session.auth = SignedAuth(key_id, load_private_key(pem))
    yield api_url, session
    session.close()
    proc.stop()


def test_no_5xx_and_no_schema_violation(served):
    """Every operation, positive and negative generation; failures are collected over all
    operations and reported together."""
    from hypothesis import given

    api_url, session = served
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            operations += 1

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                case.call_and_validate(base_url=api_url, session=session, timeout=30, checks=checks)

            try:
                run()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to generate.
                if mode is not GenerationMode.NEGATIVE:
                    failures.append(f"{operation.label} [{mode.value}]: no positive input could be generated")
            except (Exception, BaseExceptionGroup) as exc:  # collect, then fail with all of them
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert operations >= 30, f"only {operations} operation/mode pairs were exercised"
    assert not failures, "\n\n".join(failures)
