"""The mock upstream as `gateway mock-upstream --port P --tokens N` runs it, except that it forgets what it saw.

    python -m benchmarks.mock --port 8090 --tokens 16

It answers every API `create_mock_app` serves, with the same handlers. The mock records every request for the
tests (`MockState.requests` and `.headers`, and the Responses state: its requests, calls and the responses it
keeps for `previous_response_id`). Over a benchmark's hundreds of thousands of requests those lists grow
without bound, and the garbage collector's full passes over them pause the mock for up to hundreds of
milliseconds, which would be measured as latency of the mock, and of the gateway in front of it. Here they keep
the last few.
"""

from __future__ import annotations

import argparse
from collections import deque

from aiohttp import web

from gateway.mock.options import MockOptions
from gateway.mock.responses import MOCK_RESPONSES, StoredResponse
from gateway.mock.server import MOCK_STATE, create_mock_app

KEPT = 16


class _Recent(dict[str, StoredResponse]):
    """The last KEPT responses made (a benchmark never continues an older one)."""

    def __setitem__(self, key: str, value: StoredResponse) -> None:
        super().__setitem__(key, value)
        if len(self) > KEPT:
            del self[next(iter(self))]


async def _forget_requests(app: web.Application) -> None:
    state = app[MOCK_STATE]
    state.requests = deque(maxlen=KEPT)  # type: ignore[assignment]
    state.headers = deque(maxlen=KEPT)  # type: ignore[assignment]
    responses = app[MOCK_RESPONSES]
    responses.requests = deque(maxlen=KEPT)  # type: ignore[assignment]
    responses.calls = deque(maxlen=KEPT)  # type: ignore[assignment]
    responses.stored = _Recent()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mock", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=MockOptions.completion_tokens)
    args = parser.parse_args()
    app = create_mock_app(MockOptions(completion_tokens=args.tokens))
    app.on_startup.append(_forget_requests)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
