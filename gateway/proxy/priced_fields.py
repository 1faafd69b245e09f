"""Request fields that make the provider charge more than its plain text price, or by another meter.

The gateway bills tokens at the model's configured prices. A field below would have the provider bill
differently (a priority tier, audio, web search, stored completions, built-in tools billed per call, Anthropic's
server tools billed per use), so it is refused with 400 unless the model's config lists it in `allowed_fields`,
saying its prices already cover it. Each API names its own fields (`Api.priced_fields`): chat's, legacy
completions', embeddings' and Messages' are `PRICED_FIELDS`, Responses' `RESPONSES_PRICED_FIELDS` (there `store`
is free and on by default, and `tools` holds the built-in tools: those the model prices per call,
`tool_call_credits`, pass and are billed per call, proxy/tool_calls.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.billing.tool_calls import undated
from gateway.config import ModelConfig, Settings
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.proxy.apis import ApiRequest, PricedFields

# Anthropic's server tools billed per use beside tokens (web search per search, code execution per hour).
PER_USE_TOOLS = ("web_search", "code_execution")


def _per_use_tools(value: object, model: ModelConfig) -> bool:
    """Whether Messages' `tools` holds a server tool billed per use that the model has no per-call price for (web
    search may be priced, `tool_call_credits.web_search`; code execution, billed by the hour, never is)."""
    return isinstance(value, list) and any(
        isinstance(tool, dict)
        and str(tool.get("type", "")).startswith(PER_USE_TOOLS)
        and undated(str(tool["type"])) not in model.tool_call_micros
        for tool in value
    )


# Field -> whether this value of it changes the price beyond what the model's config prices. Absent and null
# never do.
PRICED_FIELDS: dict[str, Callable[[object, ModelConfig], bool]] = {
    # OpenAI: "auto" may use scale tier, "flex"/"priority" differ. Anthropic: "auto" may use Priority Tier;
    # "standard_only" is its standard price.
    "service_tier": lambda value, model: value not in ("default", "standard_only"),
    "audio": lambda value, model: True,
    "modalities": lambda value, model: not isinstance(value, list) or any(kind != "text" for kind in value),
    "web_search_options": lambda value, model: True,
    "store": lambda value, model: value is not False,
    "tools": _per_use_tools,
}


def builtin_tool_types(value: object) -> list[object]:
    """The types of the tools in a Responses `tools` list that the provider runs and bills per call (web_search,
    file_search, code_interpreter, image_generation, ...): any but function and custom tools (None for an entry
    that is no tool)."""
    tools = value if isinstance(value, list) else []
    types = [tool.get("type") if isinstance(tool, Mapping) else None for tool in tools]
    return [kind for kind in types if kind not in ("function", "custom")]


def unpriced_builtin_tools(value: object, model: ModelConfig) -> bool:
    """Whether a Responses `tools` list holds a built-in tool the model has no per-call price for."""
    return any(
        not isinstance(kind, str) or undated(kind) not in model.tool_call_micros for kind in builtin_tool_types(value)
    )


RESPONSES_PRICED_FIELDS: dict[str, Callable[[object, ModelConfig], bool]] = {
    "service_tier": PRICED_FIELDS["service_tier"],
    "tools": unpriced_builtin_tools,
}


def refuse_priced_fields(body: Mapping[str, object], model: ModelConfig, fields: PricedFields = PRICED_FIELDS) -> None:
    """400 for the first of `fields` that would change the price and that the model is not priced for."""
    for name, changes_price in fields.items():
        value = body.get(name)
        if value is not None and name not in model.allowed_fields and changes_price(value, model):
            raise InvalidRequest(
                f"'{name}' changes the provider's price, and '{model.name}' is not priced for it on this gateway "
                f'(the operator can allow it with [models."{model.name}"] allowed_fields).',
                param=name,
            )


def priced_model(chat: ApiRequest, settings: Settings, fields: PricedFields = PRICED_FIELDS) -> ModelConfig:
    """The configured model that prices `chat`: 404 for a model not served here, 400 for one of `fields` its
    prices do not cover."""
    model = settings.models.get(chat.model)
    if model is None:
        raise ModelNotFound(f"The model '{chat.model}' does not exist or is not served here.", param="model")
    refuse_priced_fields(chat.body, model, fields)
    return model
