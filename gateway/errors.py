"""Errors, each rendered as OpenAI does: `{"error": {"message", "type", "code"}}` with its HTTP status.

    GatewayError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error
    │   └── PayloadTooLarge           413
    ├── AuthError                     401 invalid_api_key
    ├── AdminAuthError                401 (admin endpoints)
    ├── InsufficientCredits           402 insufficient_quota
    ├── PermissionDenied              403 permission_denied
    ├── NotFound                      404
    │   └── ModelNotFound             404 model_not_found
    ├── MethodNotAllowed              405
    └── UpstreamError                 502 upstream_error
        └── UpstreamTimeout           504 upstream_timeout

`error_middleware` renders these; anything else is logged with its traceback and becomes a generic 500,
so no Python or Redis text ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class AdminAuthError(AuthError):
    code = "invalid_admin_token"


class InsufficientCredits(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def error_response(error: GatewayError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


def json_response(payload: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as error:
        return error_response(error)
    except web.HTTPException as http_error:
        # aiohttp's own routing errors (unknown path, wrong method) in OpenAI's shape too.
        if http_error.status == 404:
            return error_response(NotFound(f"Unknown path: {request.method} {request.path}"))
        if http_error.status == 405:
            return error_response(MethodNotAllowed(f"Method {request.method} not allowed on {request.path}"))
        if http_error.status == 413:
            return error_response(PayloadTooLarge("Request body is too large"))
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(GatewayError("The gateway had an internal error. Please retry."))
