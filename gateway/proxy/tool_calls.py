"""A request's built-in tool calls, priced per call: the bound on them the gateway forwards (`bound_tool_calls`)
and what each costs (`call_prices`), for the hold, the preview and the bill.

A request offering a built-in tool the model prices (`[models."NAME".tool_call_credits]`) makes at most
`max_tool_calls` calls (Messages: its web search tool's `max_uses`): the client's (at most
`limits.max_tool_calls`), else `limits.default_max_tool_calls`, which the gateway forwards as it forwards the
output bound. The hold covers that many calls at the dearest
price among the request's priced tools; the bill counts the answer's call items (billing/tool_calls.py), never
more than that bound.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.billing.tool_calls import CallPrices, undated
from gateway.config import ModelConfig, Settings
from gateway.errors import InvalidRequest
from gateway.proxy.apis import ApiRequest


def bound_tool_calls(request: ApiRequest, model: ModelConfig, settings: Settings) -> ApiRequest:
    """The request with its bound on built-in tool calls when `model` prices a tool it offers: the client's, at
    most `limits.max_tool_calls` (else 400), or the gateway's default. Other requests are left as they are."""
    if not any(undated(tool) in model.tool_call_micros for tool in request.builtin_tools):
        return request
    if request.max_tool_calls is None:
        return replace(request, max_tool_calls=settings.limits.default_max_tool_calls)
    most = settings.limits.max_tool_calls
    if request.max_tool_calls > most:
        field = request.tool_calls_field
        raise InvalidRequest(f"'{field}' must be a whole number up to {most} on this gateway.", param=field)
    return request


def call_prices(request: ApiRequest, model: ModelConfig) -> CallPrices:
    """What the request's built-in tool calls cost at `model`'s prices, and how many may be billed."""
    return CallPrices.of(model.tool_call_micros, request.builtin_tools, request.max_tool_calls or 0)
