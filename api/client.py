"""A small Python client for the custody API, with request signing.

    from api.client import CustodyClient, load_private_key
    c = CustodyClient("http://127.0.0.1:8080", key_id="key_...", private_key=load_private_key(path))
    c.whoami()
    c.post("/v1/webhook-endpoints", {"url": ..., "event_types": ["*"]}, idempotency_key="...")

The client signs the exact bytes it sends (it serialises JSON itself), with a fresh nonce per
request. Refusals raise `ApiError` carrying the problem document's `code`, `detail`, `field`.
Every call has an explicit timeout. No business logic lives here: methods map 1:1 to routes.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import time
import urllib.parse

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.signing import b64url, sign_request

DEFAULT_TIMEOUT_S = 30.0


class ApiError(Exception):
    def __init__(self, status: int, problem: dict, headers: dict | None = None):
        self.status = status
        self.problem = problem
        self.code = problem.get("code", "unknown")
        self.detail = problem.get("detail", "")
        self.field = problem.get("field")
        self.headers = headers or {}
        super().__init__(f"{status} {self.code}: {self.detail}")


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    return b64url(
        private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(path: str | pathlib.Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pathlib.Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def write_private_key(path: str | pathlib.Path, private_key: Ed25519PrivateKey) -> None:
    """Writes the PEM with mode 0600; refuses to overwrite an existing file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(private_key))


class CustodyClient:
    def __init__(
        self,
        base_url: str,
        key_id: str,
        private_key: Ed25519PrivateKey,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        self.key_id = key_id
        self.private_key = private_key
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s), transport=transport, trust_env=False
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def signed_headers(self, method: str, path_and_query: str, body: bytes) -> dict[str, str]:
        timestamp = str(time.time_ns() // 1_000_000)
        nonce = secrets.token_urlsafe(18)  # 24 characters
        return {
            "X-Api-Key": self.key_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": sign_request(self.private_key, method, path_and_query, timestamp, nonce, body),
        }

    def request_raw(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        params: dict | None = None,
        idempotency_key: str | None = None,
        extra_headers: dict | None = None,
    ) -> httpx.Response:
        if params:
            clean = {k: v for k, v in params.items() if v is not None}
            path = f"{path}?{urllib.parse.urlencode(clean)}" if clean else path
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers = self.signed_headers(method, path, content)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        headers.update(extra_headers or {})
        return self.http.request(method, path, content=content or None, headers=headers)

    def request(self, method: str, path: str, body: dict | None = None, **kw) -> dict:
        r = self.request_raw(method, path, body, **kw)
        if r.status_code >= 400:
            try:
                problem = r.json()
            except ValueError:
                problem = {"code": "unexpected_response", "detail": r.text[:500]}
            raise ApiError(r.status_code, problem, dict(r.headers))
        return r.json() if r.content else {}

    def get(self, path: str, params: dict | None = None) -> dict:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict | None = None, idempotency_key: str | None = None) -> dict:
        return self.request("POST", path, body if body is not None else {}, idempotency_key=idempotency_key)

    def paginate(self, path: str, params: dict | None = None, limit: int = 100):
        """Yields every item of a list, following next_cursor."""
        cursor = None
        while True:
            page = self.get(path, {**(params or {}), "limit": limit, "cursor": cursor})
            yield from page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    # --- routes ---------------------------------------------------------------------------
    def whoami(self) -> dict:
        return self.get("/v1/whoami")

    def create_api_key(self, name: str, scopes: list[str], public_key: str, idempotency_key: str | None = None) -> dict:
        return self.post("/v1/api-keys", {"name": name, "scopes": scopes, "public_key": public_key}, idempotency_key)

    def revoke_api_key(self, key_id: str) -> dict:
        return self.post(f"/v1/api-keys/{key_id}/revoke")

    def register_webhook(self, url: str, event_types: list[str], idempotency_key: str | None = None) -> dict:
        return self.post("/v1/webhook-endpoints", {"url": url, "event_types": event_types}, idempotency_key)

    def rotate_webhook_secret(self, endpoint_id: str) -> dict:
        return self.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret")

    def ping_webhook(self, endpoint_id: str) -> dict:
        return self.post(f"/v1/webhook-endpoints/{endpoint_id}/ping")

    def webhook_deliveries(self, endpoint_id: str, status: str | None = None) -> list[dict]:
        return list(self.paginate(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", {"status": status}))

    def create_customer(self, customer_id: str, name: str, kind: str = "enterprise") -> dict:
        return self.post("/v1/customers", {"id": customer_id, "name": name, "kind": kind})

    def create_sub_account(self, customer_id: str, name: str) -> dict:
        return self.post(f"/v1/customers/{customer_id}/sub-accounts", {"name": name})

    def balances(self, sub_account_id: str) -> dict:
        return self.get(f"/v1/sub-accounts/{sub_account_id}/balances")

    def create_transfer(
        self, external_id: str, from_sub: str, to_sub: str, asset: str, amount: int, idempotency_key: str | None = None
    ) -> dict:
        assert type(amount) is int, "amounts are int base units"
        body = {
            "external_id": external_id,
            "from_sub_account_id": from_sub,
            "to_sub_account_id": to_sub,
            "asset": asset,
            "amount": str(amount),
        }
        return self.post("/v1/transfers", body, idempotency_key)

    def transfer_by_external_id(self, external_id: str) -> dict | None:
        data = self.get("/v1/transfers", {"external_id": external_id})["data"]
        return data[0] if data else None

    def resend_delivery(self, delivery_id: str) -> dict:
        return self.post(f"/v1/webhook-deliveries/{delivery_id}/resend")

    # --- withdrawals, approvals, whitelist, deposits ----------------------------------------
    def create_withdrawal(self, sub_account_id: str, external_id: str, asset: str, destination: str, amount: int,
                          idempotency_key: str | None = None) -> dict:
        assert type(amount) is int, "amounts are int base units"
        body = {"external_id": external_id, "sub_account_id": sub_account_id, "asset": asset, "destination": destination,
                "amount": str(amount)}
        return self.post("/v1/withdrawals", body, idempotency_key)

    def withdrawal(self, withdrawal_id: str) -> dict:
        return self.get(f"/v1/withdrawals/{withdrawal_id}")

    def withdrawal_by_external_id(self, external_id: str) -> dict | None:
        data = self.get("/v1/withdrawals", {"external_id": external_id})["data"]
        return data[0] if data else None

    def withdrawals(self, status: str | None = None) -> list[dict]:
        return list(self.paginate("/v1/withdrawals", {"status": status}))

    def cancel_withdrawal(self, withdrawal_id: str) -> dict:
        return self.post(f"/v1/withdrawals/{withdrawal_id}/cancel")

    def pending_approvals(self) -> list[dict]:
        return list(self.paginate("/v1/approvals"))

    def approval(self, withdrawal_id: str) -> dict:
        return self.get(f"/v1/approvals/{withdrawal_id}")

    def approve(self, withdrawal_id: str, approver_id: str, signature_hex: str, approved_at_ms: int | None = None) -> dict:
        body = {"approver_id": approver_id, "signature": signature_hex}
        if approved_at_ms is not None:
            body["approved_at_ms"] = approved_at_ms
        return self.post(f"/v1/approvals/{withdrawal_id}/approve", body)

    def reject(self, withdrawal_id: str, approver_id: str, signature_hex: str) -> dict:
        return self.post(f"/v1/approvals/{withdrawal_id}/reject", {"approver_id": approver_id, "signature": signature_hex})

    def whitelist_add(self, sub_account_id: str, asset: str, address: str) -> dict:
        return self.post(f"/v1/sub-accounts/{sub_account_id}/whitelist", {"asset": asset, "address": address})

    def whitelist(self, sub_account_id: str) -> list[dict]:
        return list(self.paginate(f"/v1/sub-accounts/{sub_account_id}/whitelist"))

    def whitelist_remove(self, sub_account_id: str, asset: str, address: str) -> dict:
        return self.request("DELETE", f"/v1/sub-accounts/{sub_account_id}/whitelist/{urllib.parse.quote(asset)}/{address}")

    def issue_deposit_address(self, sub_account_id: str, asset: str, idempotency_key: str | None = None) -> dict:
        return self.post(f"/v1/sub-accounts/{sub_account_id}/deposit-addresses", {"asset": asset}, idempotency_key)

    def deposit_addresses(self, sub_account_id: str) -> list[dict]:
        return list(self.paginate(f"/v1/sub-accounts/{sub_account_id}/deposit-addresses"))

    def deposits(self, sub_account_id: str) -> list[dict]:
        return list(self.paginate(f"/v1/sub-accounts/{sub_account_id}/deposits"))

    def deposit(self, deposit_id: str) -> dict:
        return self.get(f"/v1/deposits/{deposit_id}")
