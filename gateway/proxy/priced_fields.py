"""Request fields that make the provider charge more than its plain text price, or by another meter.

The gateway bills tokens at the model's configured prices. A field below would have the provider bill
differently (a priority tier, audio, web search, stored completions, Anthropic's server tools billed per use),
so it is refused with 400 unless the model's config lists it in `allowed_fields`, saying its prices already
cover it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.config import ModelConfig, Settings
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.proxy.apis import ApiRequest

# Anthropic's server tools billed per use beside tokens (web search per search, code execution per hour).
PER_USE_TOOLS = ("web_search", "code_execution")


def _per_use_tools(value: object) -> bool:
    return isinstance(value, list) and any(
        isinstance(tool, dict) and str(tool.get("type", "")).startswith(PER_USE_TOOLS) for tool in value
    )


# Field -> whether this value of it changes the price. Absent and null never do.
PRICED_FIELDS: dict[str, Callable[[object], bool]] = {
    # OpenAI: "auto" may use scale tier, "flex"/"priority" differ. Anthropic: "auto" may use Priority Tier;
    # "standard_only" is its standard price.
    "service_tier": lambda value: value not in ("default", "standard_only"),
    "audio": lambda value: True,
    "modalities": lambda value: not isinstance(value, list) or any(kind != "text" for kind in value),
    "web_search_options": lambda value: True,
    "store": lambda value: value is not False,
    "tools": _per_use_tools,
}


def refuse_priced_fields(body: Mapping[str, object], model: ModelConfig) -> None:
    """400 for the first field that would change the price and that the model is not priced for."""
    for name, changes_price in PRICED_FIELDS.items():
        value = body.get(name)
        if value is not None and name not in model.allowed_fields and changes_price(value):
            raise InvalidRequest(
                f"'{name}' changes the provider's price, and '{model.name}' is not priced for it on this gateway "
                f'(the operator can allow it with [models."{model.name}"] allowed_fields).',
                param=name,
            )


def priced_model(chat: ApiRequest, settings: Settings) -> ModelConfig:
    """The configured model that prices `chat`: 404 for a model not served here, 400 for a field its prices
    do not cover."""
    model = settings.models.get(chat.model)
    if model is None:
        raise ModelNotFound(f"The model '{chat.model}' does not exist or is not served here.", param="model")
    refuse_priced_fields(chat.body, model)
    return model
