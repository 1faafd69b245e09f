"""Helpers of the Messages tests: a gateway with an Anthropic upstream (the mock) beside the suite's OpenAI one,
its model's prices and their reference, and the official `anthropic` client pointed at the gateway."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from anthropic import AsyncAnthropic

from gateway.billing.pricing import Price
from gateway.config import ModelConfig
from gateway.mock import claude
from tests.common import TEST_PRICE, Gateway, StartGateway
from tests.oracle import ReferencePrice

CLAUDE = "claude-test"
# Every price has fractional micro-credits per token, so each bill is rounded: 1,000.25 in, 2,000.15 out, 100.05 per
# cache read and 1,250.35 per cache write, per million tokens.
CLAUDE_PRICE = Price(
    input_micros_per_million=1_000_250_000,
    output_micros_per_million=2_000_150_000,
    cached_input_micros_per_million=100_050_000,
    cache_write_micros_per_million=1_250_350_000,
)
CLAUDE_REFERENCE = ReferencePrice.of("1000.25", "2000.15", "100.05", "1250.35")
PROVIDER_KEY = "provider-key-claude"


async def start_claude(
    start_gateway: StartGateway, settings: Mapping[str, object] | None = None, **mock_options: object
) -> Gateway:
    """A gateway serving `claude-test` from a mock Anthropic upstream (`claude`, `mock_options`) and `m-main`
    from a mock OpenAI one (`main`)."""
    models = {
        CLAUDE: ModelConfig(name=CLAUDE, upstream="claude", upstream_model="claude-sonnet-mock", price=CLAUDE_PRICE),
        "m-main": ModelConfig(name="m-main", upstream="main", upstream_model="gpt-4o-mini", price=TEST_PRICE),
    }
    overrides = {"upstream_fields": {"claude": {"api": "anthropic"}}, "models": models, **(settings or {})}
    return await start_gateway(overrides, main={}, claude=mock_options)


def client(gateway: Gateway, key: str, *, bearer: bool = False) -> AsyncAnthropic:
    """The official client, unmodified: the gateway's root as its base URL, the key as `x-api-key` (its default)
    or as a bearer token (`auth_token`). The `claude_client` fixture makes these and closes them."""
    root = str(gateway.client.make_url("/"))
    if bearer:
        return AsyncAnthropic(base_url=root, auth_token=key, api_key=None, max_retries=0)
    return AsyncAnthropic(base_url=root, api_key=key, max_retries=0)


MakeClient = Callable[..., AsyncAnthropic]


def mock_usage(body: Mapping[str, object], output_tokens: int, *, written: int = 0, read: int = 0) -> dict[str, int]:
    """The usage the mock reports for `body` by its own counting (gateway/mock/claude.py), given the output it
    produced and how much of the prompt it wrote to or read from its cache."""
    total = claude.count_input(body).tokens
    return {
        "input_tokens": total - written - read,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
    }


def reference_cost(usage: Mapping[str, int]) -> int:
    """What `usage` costs at claude-test's prices, worked out by tests/oracle.py."""
    written, read = usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]
    prompt = usage["input_tokens"] + written + read
    return CLAUDE_REFERENCE.cost_micros(prompt, usage["output_tokens"], cached=read, cache_write=written)
