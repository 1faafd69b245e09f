"""The price of a request before it is sent: its prompt tokens, the output bound a hold would cover, and the
cost range between them. Served at POST /v1/chat/completions/count_tokens and by `gateway tokens count`."""

from __future__ import annotations

from gateway.billing.pricing import credits_number
from gateway.billing.scripts import MAX_SAFE_INTEGER
from gateway.config import ModelConfig, Settings
from gateway.proxy.apis import ApiRequest
from gateway.proxy.metering import output_bound
from gateway.proxy.tool_calls import call_prices


def price_preview(chat: ApiRequest, model: ModelConfig, settings: Settings, prompt_tokens: int) -> dict[str, object]:
    """`min_credits` is the prompt alone; `max_credits` the prompt, every choice's output bound and every built-in
    tool call the request may make: exactly what the gateway would hold (unless the balance is short and no
    max_tokens was given: then it holds less and forwards a smaller bound)."""
    max_completion_tokens = output_bound(chat, model, settings, prompt_tokens) * chat.n
    # Costs beyond 2^53 micro-credits no balance can pay; capped as the hold is, so the figures stay exact.
    least = min(model.price.hold_micros(prompt_tokens, 0), MAX_SAFE_INTEGER)
    calls = call_prices(chat, model).hold_micros
    most = min(model.price.hold_micros(prompt_tokens, max_completion_tokens) + calls, MAX_SAFE_INTEGER)
    # A client's max_tokens times n may pass what JSON encoders take (64 bits); no hold covers more than 2^53.
    max_completion_tokens = min(max_completion_tokens, MAX_SAFE_INTEGER)
    return {
        "object": "chat.completion.token_count",
        "model": chat.model,
        "prompt_tokens": prompt_tokens,
        "max_completion_tokens": max_completion_tokens,
        "cost": {
            "min_credits": credits_number(least),
            "min_credits_micros": least,
            "max_credits": credits_number(most),
            "max_credits_micros": most,
        },
    }
