"""/v1/embeddings of the mock upstream: deterministic vectors, and usage counted by the mock's own rule.

Each input's vector depends only on the input and `dimensions` (default DIMENSIONS): unit length, every value a
float32, so `encoding_format: "base64"` (the little-endian float32 bytes, base64-encoded, as OpenAI sends them)
and the float list are the same vector. Usage is `prompt_tokens` = `total_tokens`: each string's tokens with
tiktoken (`counting`), each token array's length.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct

import orjson
from aiohttp import web

from gateway.mock import counting
from gateway.mock.exchange import MOCK_OPTIONS, accepted_body, error_response
from gateway.mock.reply import dumps

DIMENSIONS = 256  # small, so that a batch of 2048 inputs stays a few MB; `dimensions` asks for more
MAX_DIMENSIONS = 3072  # text-embedding-3-large's
MAX_VALUES = 1 << 20  # per answer (~20 MB of JSON): a bigger one is refused, as the gateway would refuse its size


async def embeddings(request: web.Request) -> web.Response:
    body = await accepted_body(request, lambda body: body.get("input") is not None, "input")
    if isinstance(body, web.Response):
        return body
    options = request.app[MOCK_OPTIONS]
    model = str(body.get("model", "mock-model"))
    items = counting.input_items(body["input"])
    dimensions = body.get("dimensions")
    size = dimensions if isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0 else 0
    if size > MAX_DIMENSIONS:
        return error_response(400, f"'dimensions' must be at most {MAX_DIMENSIONS}.", "invalid_value")
    if len(items) * (size or DIMENSIONS) > MAX_VALUES:
        return error_response(400, f"The answer would hold more than {MAX_VALUES} values.", "invalid_value")
    as_base64 = body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector(item, size or DIMENSIONS), as_base64)}
        for index, item in enumerate(items)
    ]
    payload: dict[str, object] = {"object": "list", "data": data, "model": model}
    if options.usage:
        tokens = counting.count_input(model, items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        payload["usage"] = usage if options.reported_usage is None else options.reported_usage
    return web.json_response(payload, dumps=lambda obj: dumps(obj).decode())


def vector(item: object, size: int) -> list[float]:
    """A unit vector of `size` float32 values, the same for the same input."""
    seed = hashlib.blake2b(orjson.dumps(item), digest_size=8).digest()
    rng = random.Random(seed)
    raw = [rng.uniform(-1.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [_float32(value / norm) for value in raw]


def _float32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _encoded(values: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
