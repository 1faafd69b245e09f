"""Admin operations shared by the admin HTTP API and the CLI: validate input, act, return JSON-ready views."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.admin.accounts import Account, AccountStore, ApiKeyRecord
from gateway.billing import GrantError, Ledger
from gateway.billing.periods import period_view
from gateway.billing.pricing import credits_number
from gateway.errors import InvalidRequest, NotFound
from gateway.numbers import parse_credits

MAX_NAME_LENGTH = 200


class AdminService:
    """Accounts, API keys and credits, as the operator manages them."""

    def __init__(self, accounts: AccountStore, ledger: Ledger):
        self.accounts = accounts
        self.ledger = ledger

    async def create_account(self, payload: Mapping[str, object]) -> dict[str, object]:
        name = _checked_name(payload)
        credits = parse_credits(payload.get("credits", 0), "credits", allow_negative=False)
        account = await self.accounts.insert_account(name, credits)
        return await self.account_view(account)

    async def show_account(self, account_id: str) -> dict[str, object]:
        return await self.account_view(await self._existing_account(account_id))

    async def list_accounts(self) -> dict[str, object]:
        accounts = await self.accounts.load_accounts()
        reserved = await self.ledger.reserved_many([account.id for account in accounts])
        return {"object": "list", "data": [self._view(a, held) for a, held in zip(accounts, reserved, strict=True)]}

    async def create_api_key(self, account_id: str, payload: Mapping[str, object]) -> dict[str, object]:
        await self._existing_account(account_id)
        record, key = await self.accounts.insert_api_key(account_id, _checked_name(payload))
        return {**api_key_view(record), "key": key}

    async def list_api_keys(self, account_id: str) -> dict[str, object]:
        await self._existing_account(account_id)
        records = await self.accounts.load_api_keys(account_id)
        return {"object": "list", "data": [api_key_view(record) for record in records]}

    async def revoke_api_key(self, api_key_id: str) -> dict[str, object]:
        record = await self.accounts.mark_revoked(api_key_id)
        if record is None:
            raise NotFound(f"No key with id '{api_key_id}'.")
        return api_key_view(record)

    async def adjust_credits(self, account_id: str, payload: Mapping[str, object]) -> dict[str, object]:
        await self._existing_account(account_id)
        amount = parse_credits(payload.get("amount"), "amount", allow_negative=True)
        if amount == 0:
            raise InvalidRequest("'amount' must not be zero.", param="amount")
        note = payload.get("note", "")
        if not isinstance(note, str):
            raise InvalidRequest("'note' must be a string.", param="note")
        try:
            await self.ledger.grant(account_id, amount, note[:MAX_NAME_LENGTH])
        except GrantError as exc:
            raise InvalidRequest(f"Cannot apply this amount: {exc}.", param="amount") from exc
        return await self.show_account(account_id)

    async def _existing_account(self, account_id: str) -> Account:
        account = await self.accounts.load_account(account_id)
        if account is None:
            raise NotFound(f"No account with id '{account_id}'.")
        return account

    async def account_view(self, account: Account) -> dict[str, object]:
        return self._view(account, await self.ledger.reserved(account.id))

    def _view(self, account: Account, reserved: int) -> dict[str, object]:
        micros = account.balance_micros
        now = datetime.fromtimestamp(self.ledger.clock(), UTC)
        return {
            "id": account.id,
            "object": "account",
            "name": account.name,
            "credits": credits_number(micros),
            "credits_micros": micros,
            "reserved_credits": credits_number(reserved),
            "created_at": account.created_at,
            **period_view(now),
        }


def api_key_view(record: ApiKeyRecord) -> dict[str, object]:
    return {"object": "api_key", **record.public()}


def _checked_name(payload: Mapping[str, object]) -> str:
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"'name' is required: a string of 1 to {MAX_NAME_LENGTH} characters.", param="name")
    return name.strip()
