"""The access log: off by default (formatting a line per request costs more than counting its tokens), and
when `[server] access_log = true`, one compact line per request, written once: method, path, status, time
and request id. Never headers or the query string, so no key or token reaches the log."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

log = logging.getLogger("gateway.access")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        request_id = response.headers.get("x-request-id", "-")
        self.logger.info("%s %s %d %.1fms %s", request.method, request.path, response.status, time * 1000, request_id)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def access_log_options(enabled: bool) -> dict[str, object]:
    """`web.run_app` keyword arguments for the access log as configured."""
    if not enabled:
        return {"access_log": None}
    return {"access_log": log, "access_log_class": AccessLogger}
