"""API schemas, one family per resource: `<Thing>Create` in, `<Thing>Public` out, `<Things>Public`
for a page. Inputs forbid unknown fields; amounts are decimal strings; times RFC 3339 UTC."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.signing import b64url_decode

from node import limits

Scope = Literal["read", "deposit", "withdraw", "approve", "admin"]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- API keys ----------------------------------------------------------------------------
class ApiKeyCreate(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=limits.API_KEY_NAME_LEN_MAX)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=5)]
    public_key: Annotated[
        str, StringConstraints(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]{43}$")
    ] = Field(description="The key's Ed25519 public key, 32 bytes as unpadded base64url. The private key stays with you.")

    @field_validator("public_key")
    @classmethod
    def _canonical_base64url(cls, v: str) -> str:
        try:
            raw = b64url_decode(v)
        except ValueError:
            raise ValueError("not canonical unpadded base64url") from None
        if len(raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        return v


class ApiKeyPublic(BaseModel):
    id: str
    client_id: str
    name: str
    scopes: list[Scope]
    public_key: str
    created_at: str
    revoked_at: str | None


class ApiKeysPublic(BaseModel):
    data: list[ApiKeyPublic]
    next_cursor: str | None


class PrincipalPublic(BaseModel):
    key_id: str
    client_id: str
    scopes: list[Scope]


# --- webhooks ----------------------------------------------------------------------------
EventType = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z*][a-z_.*]*$")]


class WebhookEndpointCreate(Input):
    url: Annotated[str, StringConstraints(min_length=1, max_length=limits.WEBHOOK_URL_LEN_MAX)]
    event_types: Annotated[list[EventType], Field(min_length=1, max_length=limits.WEBHOOK_EVENT_TYPES_PER_ENDPOINT_MAX)] = Field(
        description='Exact types ("withdrawal.completed"), families ("deposit.*") or "*".'
    )


class WebhookEndpointPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    enabled: bool
    created_at: str
    secret_rotated_at: str


class WebhookEndpointSecretPublic(WebhookEndpointPublic):
    secret: str = Field(description="HMAC-SHA256 key for Custody-Signature; shown only in this response.")


class WebhookEndpointsPublic(BaseModel):
    data: list[WebhookEndpointPublic]
    next_cursor: str | None


DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed"]


class WebhookDeliveryPublic(BaseModel):
    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str


class WebhookDeliveriesPublic(BaseModel):
    data: list[WebhookDeliveryPublic]
    next_cursor: str | None


class WebhookPingPublic(BaseModel):
    event_id: str


# --- system ------------------------------------------------------------------------------
class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadinessPublic(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]


# --- customers, sub-accounts, balances, transfers -----------------------------------------
LedgerId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# Base units as a decimal string: no sign, no leading zeros, up to 78 digits (2**256 fits).
AmountStr = Annotated[str, StringConstraints(min_length=1, max_length=78, pattern=r"^[1-9][0-9]*$")]
ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=limits.API_EXTERNAL_ID_LEN_MAX, pattern=r"^[\x21-\x7e]+$")
]


class CustomerCreate(Input):
    id: LedgerId = Field(description="Your id for the customer; creating it again with the same name is a no-op.")
    name: Name
    kind: Literal["enterprise", "individual"] = "enterprise"


class CustomerPublic(BaseModel):
    id: str
    name: str
    kind: str
    created_at: str


class CustomersPublic(BaseModel):
    data: list[CustomerPublic]
    next_cursor: str | None


class SubAccountCreate(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:-]+$")]


class SubAccountPublic(BaseModel):
    id: str
    customer_id: str
    name: str
    created_at: str


class SubAccountsPublic(BaseModel):
    data: list[SubAccountPublic]
    next_cursor: str | None


class BalancePublic(BaseModel):
    asset: str
    posted: str = Field(description="Settled balance, base units.")
    pending_out: str = Field(description="Held for outgoing movements, base units.")
    pending_in: str = Field(description="Incoming, not yet settled, base units.")
    available: str = Field(description="posted - pending_out: what can be spent now.")


class BalancesPublic(BaseModel):
    sub_account_id: str
    data: list[BalancePublic]


class AssetPublic(BaseModel):
    asset: str
    scale: int
    kind: str


class AssetsPublic(BaseModel):
    data: list[AssetPublic]


class TransferCreate(Input):
    external_id: ExternalId = Field(description="Your unique id for this transfer, forever; retries never move money twice.")
    from_sub_account_id: LedgerId
    to_sub_account_id: LedgerId
    asset: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: AmountStr


class TransferPublic(BaseModel):
    id: str
    external_id: str
    from_sub_account_id: str
    to_sub_account_id: str
    asset: str
    amount: str
    fee: str
    status: Literal["completed"]
    created_at: str


class TransfersPublic(BaseModel):
    data: list[TransferPublic]
    next_cursor: str | None


# --- withdrawals, approvals, whitelist ------------------------------------------------------
AssetId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9:_-]+$")]
Address = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9]+$")]
WithdrawalStatus = Literal["submitted", "pending_screening", "pending_approval", "queued", "pending_signature",
                           "broadcasting", "confirming", "completed", "rejected", "blocked", "cancelled", "failed"]


class WithdrawalCreate(Input):
    external_id: ExternalId = Field(description="Your unique id for this withdrawal, forever; a retry never creates a second one.")
    sub_account_id: LedgerId
    asset: AssetId = Field(description='"BTC", "ETH" or "ERC20:<contract address>".')
    destination: Address = Field(description="The address to pay; whitelisted on the sub-account when the policy says so.")
    amount: AmountStr


class ApprovalEntryPublic(BaseModel):
    approver_id: str
    decision: Literal["approve", "reject"]


class WithdrawalPublic(BaseModel):
    id: str
    external_id: str | None = Field(description="Yours; null for a withdrawal created by staff outside the API.")
    sub_account_id: str
    asset: str
    destination: str
    amount: str
    fee_max: str = Field(description="The most the network fee may be, in the chain's fee asset base units.")
    status: WithdrawalStatus
    sub_status: str = Field(description="Why it is in this status, e.g. `awaiting_approvals: 1 of 2`.")
    txid: str | None
    txids: list[str] = Field(description="Every signed version's txid, oldest first (fee bumps replace transactions).")
    fee_paid: str | None
    approvals: list[ApprovalEntryPublic]
    created_at: str
    updated_at: str


class WithdrawalsPublic(BaseModel):
    data: list[WithdrawalPublic]
    next_cursor: str | None


class ApprovalPublic(BaseModel):
    withdrawal: WithdrawalPublic
    intent: dict = Field(description="The withdrawal intent approvers sign, as JSON.")
    intent_canonical: str = Field(
        description="The exact bytes to sign (RFC 8785 of `intent`) as UTF-8 text; a rejection signs "
        '"custody/withdrawal-reject/v1\\n" followed by them.'
    )


class ApprovalsPublic(BaseModel):
    data: list[ApprovalPublic]
    next_cursor: str | None


class ApprovalDecisionCreate(Input):
    approver_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    signature: Annotated[str, StringConstraints(min_length=128, max_length=128, pattern=r"^[0-9a-f]{128}$")] = Field(
        description="Hex Ed25519 signature by the approver's own key (what `custody approve` makes)."
    )
    approved_at_ms: Annotated[int, Field(ge=0, le=2**53)] | None = Field(
        default=None,
        description="Approvals only: the approver's clock (Unix ms) signed with the intent "
        '("custody/withdrawal-approve-at/v1\\n" <ms> "\\n" + intent_canonical); a vault with a delay takes timed approvals only.',
    )


class WhitelistEntryCreate(Input):
    asset: AssetId
    address: Address


class WhitelistEntryPublic(BaseModel):
    sub_account_id: str
    asset: str
    address: str
    added_at: str
    usable_after: str = Field(description="The time-lock: withdrawals to it are held for review before this.")


class WhitelistEntriesPublic(BaseModel):
    data: list[WhitelistEntryPublic]
    next_cursor: str | None


# --- deposits ------------------------------------------------------------------------------
class DepositAddressCreate(Input):
    asset: AssetId = Field(description='"BTC", "ETH" or "ERC20:<contract>"; an ethereum address receives every ethereum asset.')


class DepositAddressPublic(BaseModel):
    id: str
    sub_account_id: str
    chain: str
    network: str
    assets: str = Field(description='"BTC", or "ETH" for ETH and every ERC-20 token.')
    address: str
    created_at: str


class DepositAddressesPublic(BaseModel):
    data: list[DepositAddressPublic]
    next_cursor: str | None


class DepositPublic(BaseModel):
    id: str
    sub_account_id: str
    address_id: str
    address: str
    chain: str
    network: str
    asset: str
    amount: str
    txid: str
    block_height: int
    status: Literal["pending", "credited", "voided", "reorged_after_credit"]
    review: str | None
    created_at: str
    updated_at: str


class DepositsPublic(BaseModel):
    data: list[DepositPublic]
    next_cursor: str | None
