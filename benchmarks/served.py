"""Before anything is measured: each selected API's request, once, to the gateway and to the mock.

A load the gateway answers with 404 is an API (or a model) this gateway does not serve: the run is refused with
that said, rather than measured as a table of errors. Any other answer but 200 is refused too, with its status
and the error's message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping

from benchmarks.apis import ApiLoad


class NotServed(RuntimeError):
    """A selected API that the gateway or the mock does not answer with 200."""


def url(port: int, load: ApiLoad) -> str:
    return f"http://127.0.0.1:{port}{load.path}"


def check_served(ports: Mapping[str, int], key: str, loads: list[ApiLoad]) -> None:
    """One request of each load to each target ("gateway", "direct": their ports), read to its end; NotServed,
    saying what to do, unless every answer is 200."""
    for load in loads:
        for target, port in ports.items():
            headers = dict(line.split(": ", 1) for line in load.header_lines(key))
            request = urllib.request.Request(url(port, load), load.body_bytes(), headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    continue
            except urllib.error.HTTPError as error:
                status, said = error.code, _error_message(error.read())
            where = f"{load.label} (POST {load.path})"
            if target == "gateway" and status == 404:
                raise NotServed(
                    f"the gateway answers 404 to {where}: {said!r}. It does not serve the {load.api} API (or the "
                    f"model benchmarks/stack.py configures for it): leave {load.api!r} out of --apis."
                )
            name = "the gateway" if target == "gateway" else "the mock upstream"
            raise NotServed(f"{name} answers {status} to {where}: {said!r}")


def _error_message(body: bytes) -> str:
    """The `error.message` of an OpenAI- or Anthropic-shaped error body, else the body's start."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:300].decode(errors="replace")
    return str(message)
