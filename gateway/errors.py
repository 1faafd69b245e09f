"""Errors, each rendered as OpenAI does: `{"error": {"message", "type", "code"}}` with its HTTP status.

    GatewayError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error
    │   └── PayloadTooLarge           413
    ├── AuthError                     401 invalid_api_key
    │   ├── MissingApiKey             401 missing_api_key
    │   └── AdminAuthError            401 invalid_admin_token (admin endpoints)
    ├── InsufficientCredits           402 insufficient_quota
    ├── PermissionDenied              403 permission_denied
    ├── NotFound                      404
    │   └── ModelNotFound             404 model_not_found
    ├── MethodNotAllowed              405
    └── UpstreamError                 502 upstream_error
        └── UpstreamTimeout           504 upstream_timeout

Each class sets its status, type and code; a class with one fixed message sets `default_message`, so an error
is made complete and never edited afterwards. `error_middleware` renders these; anything else is logged with
its traceback and becomes a generic 500, so no Python or Redis text ever reaches a client.
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
    default_message = "The gateway had an internal error. Please retry."

    def __init__(
        self, message: str | None = None, *, param: str | None = None, headers: Mapping[str, str] | None = None
    ):
        self.message = self.default_message if message is None else message
        super().__init__(self.message)
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
    default_message = "Incorrect API key provided. Create a key with the admin API or `gateway keys create`."


class MissingApiKey(AuthError):
    code = "missing_api_key"
    default_message = "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY`."


class AdminAuthError(AuthError):
    code = "invalid_admin_token"
    default_message = "Invalid or missing admin token."


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
        return error_response(GatewayError())
