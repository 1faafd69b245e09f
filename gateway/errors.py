"""Errors, each rendered as OpenAI does: `{"error": {"message", "type", "code"}}` with its HTTP status.

    GatewayError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error
    │   ├── ContextLengthExceeded     400 context_length_exceeded (the model's input or context bound)
    │   ├── MalformedRequest          400 malformed_request (not HTTP/1.1 aiohttp's parser can read)
    │   ├── PayloadTooLarge           413
    │   └── HeadersTooLarge           431 request_header_fields_too_large
    ├── AuthError                     401 invalid_api_key
    │   ├── MissingApiKey             401 missing_api_key
    │   └── AdminAuthError            401 invalid_admin_token (admin endpoints)
    ├── InsufficientCredits           402 insufficient_quota
    ├── PermissionDenied              403 permission_denied
    ├── NotFound                      404
    │   └── ModelNotFound             404 model_not_found
    ├── MethodNotAllowed              405
    ├── RequestTimeout                408 request_timeout (the body stalled)
    ├── UnsupportedMediaType          415 unsupported_content_encoding
    ├── UpstreamError                 502 upstream_error
    │   ├── UpstreamAuthFailed        502 upstream_authentication_failed (upstream 401/403: not the tenant's)
    │   ├── ProviderKeyMissing        502 provider_key_missing (the upstream's key variable is unset)
    │   └── UpstreamTimeout           504 upstream_timeout
    └── ServiceUnavailable            503 service_unavailable, with Retry-After (Redis unreachable)

Each class sets its status, type and code; a class with one fixed message sets `default_message`, so an error
is made complete and never edited afterwards. `error_middleware` renders these; anything else is logged with
its traceback and becomes a generic 500, so no Python or Redis text ever reaches a client. A request aiohttp's
HTTP parser refuses never reaches the middleware: gateway/http_server.py answers it with these classes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.metrics import METRICS

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


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class MalformedRequest(InvalidRequest):
    code = "malformed_request"
    default_message = "The request is not valid HTTP/1.1: check its request line, its headers and its body's framing."


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class HeadersTooLarge(InvalidRequest):
    status = 431
    code = "request_header_fields_too_large"


class AuthError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    default_message = "Incorrect API key provided. Create a key with the admin API or `gateway keys create`."


class MissingApiKey(AuthError):
    code = "missing_api_key"
    default_message = (
        "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY` or `x-api-key: YOUR_KEY`."
    )


class AdminAuthError(AuthError):
    code = "invalid_admin_token"
    default_message = "Invalid or missing admin token."


class InsufficientCredits(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str | None = None, *, balance_micros: int, param: str | None = None):
        super().__init__(message, param=param)
        self.balance_micros = balance_micros  # the balance that could not pay, for the answer's headers


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


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    default_message = "The request body did not arrive in time."


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_content_encoding"
    default_message = "Compressed request bodies are not accepted: send the body without Content-Encoding."


class ServiceUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "service_unavailable"
    default_message = "The gateway cannot reach its ledger right now. Please retry shortly."
    retry_after_s = 2

    def __init__(
        self, message: str | None = None, *, param: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message, param=param, headers={"Retry-After": str(self.retry_after_s), **(headers or {})})


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamAuthFailed(UpstreamError):
    code = "upstream_authentication_failed"
    default_message = "The gateway could not authenticate to the upstream. The operator has been told."


class ProviderKeyMissing(UpstreamError):
    code = "provider_key_missing"
    default_message = (
        "The gateway has no provider key for this model's upstream, so it cannot forward the request. "
        "The operator must set it; nothing was charged."
    )


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
    except REDIS_UNAVAILABLE:
        log.warning("Redis unavailable on %s %s", request.method, request.path)
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.redis_error()
        return error_response(ServiceUnavailable())
    except web.HTTPException as http_error:
        # aiohttp's own routing errors (unknown path, wrong method) in OpenAI's shape too.
        if http_error.status == 404:
            return error_response(NotFound(f"Unknown path: {request.method} {request.path}"))
        if http_error.status == 405:
            return error_response(MethodNotAllowed(f"Method {request.method} not allowed on {request.path}"))
        if http_error.status == 413:
            return error_response(PayloadTooLarge("Request body is too large"))
        raise
    except ConnectionResetError:
        if request.transport is not None and not request.transport.is_closing():
            log.exception("unhandled error on %s %s", request.method, request.path)  # a reset from elsewhere
            return error_response(GatewayError())
        # The client hung up with its body still arriving: nothing is wrong and no one is there to answer. aiohttp
        # drops this answer quietly when it finds the connection gone.
        log.info("the client went away during %s %s", request.method, request.path)
        return error_response(InvalidRequest("The client closed the connection before its request was complete."))
    except Exception as exc:
        refused = _refused_body(request, exc)
        if refused is not None:
            return refused
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(GatewayError())


def _refused_body(request: web.Request, exc: Exception) -> web.Response | None:
    """A 400 when `exc` is aiohttp's parser refusing this request's own body (chunked garbage after the head);
    None for anything else, an upstream's garbage included. Its text quotes the bytes: only its kind is logged."""
    failed = request.content.exception()  # as aiohttp's parsers set it: the error, or one caused by it
    if not isinstance(exc, HttpProcessingError | web.RequestPayloadError) or failed is None:
        return None
    if exc is not failed and exc is not failed.__cause__:
        return None
    log.info("refused a request body that is not valid HTTP on %s %s (%s)", request.method, request.path, _kind(exc))
    response = error_response(MalformedRequest())
    response.force_close()  # the rest of the connection cannot be framed
    return response


def _kind(error: HttpProcessingError | web.RequestPayloadError) -> str:
    """What the parser refused, without its text (which quotes the request's bytes)."""
    underlying = error.__cause__ if isinstance(error, web.RequestPayloadError) else error
    return type(underlying or error).__name__


class _MalformedRequestRedaction(logging.Filter):
    """aiohttp logs a request it cannot parse with the offending bytes, an over-long Authorization header
    among them (and, once a refused body has been answered, that body's error as it drains the connection):
    keep the fact, drop the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError | web.RequestPayloadError):
            record.msg, record.args = "refused a malformed request (%s)", (_kind(error),)
            record.exc_info = record.exc_text = None
        return True


def redact_malformed_request_logs() -> None:
    """Install the redaction on aiohttp's server logger, once per process."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(existing, _MalformedRequestRedaction) for existing in server_log.filters):
        server_log.addFilter(_MalformedRequestRedaction())
