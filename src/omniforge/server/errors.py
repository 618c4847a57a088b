"""The one place where a failed request becomes OpenAI's JSON error shape.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

`to_error` turns anything a request can raise (omniforge's own errors, FastAPI's validation
errors, malformed JSON, unknown routes, oversized bodies, bugs) into an OmniforgeError, and
`error_response` renders it with its status and, where the error knows one, a Retry-After
header. `install` registers the handlers on an app; streaming routes use `to_error` directly to
report a failure after the response has started.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from ..errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OmniforgeError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitError,
)
from .metrics import MODEL_HEADER

log = logging.getLogger("omniforge.server")

# Parts of a pydantic error location that name a union member, not a field.
_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "literal"}


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a request body that grows past the limit (see app.BodyLimit)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(status_code=413, detail=f"request body is over the {limit_bytes / 2**20:g} MB limit")


def _is_tag(part: Any) -> bool:
    """A union member's tag in a pydantic error location ("str", "list[str]", "VoiceId")."""
    return isinstance(part, str) and (
        "[" in part or part.lower() in _TYPE_TAGS or part[:1].isupper() or "-" in part
    )


def _split(loc: Sequence[Any]) -> tuple[str | None, Any]:
    """("body", "messages", 0, "content", "str") -> ("messages[0].content", "str")."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out, tag = "", None
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(part):
            tag = part  # the field path ends at a union member
            break
        else:
            out += f".{part}" if out else str(part)
    return out or None, tag


def _param(loc: Sequence[Any]) -> str | None:
    return _split(loc)[0]


def _plural(tag: str) -> str:
    if tag.startswith("list["):
        return "lists of " + _plural(tag[5:-1])
    return {"str": "strings", "int": "integers", "float": "numbers", "bool": "booleans"}.get(tag.lower(), "objects")


def _readable(tag: str) -> str:
    if tag.startswith("list["):
        return "a list of " + _plural(tag[5:-1])
    return {
        "str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean", "none": "null",
    }.get(tag.lower(), "an object")


def _from_validation(exc: RequestValidationError) -> OmniforgeError:
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("invalid request")
    first = errors[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "invalid JSON")
        pos = first.get("loc", (None, None))[-1]
        where = f" at position {pos}" if isinstance(pos, int) else ""
        return InvalidRequestError(
            f"We could not parse the JSON body of your request ({detail}{where}). "
            "The API expects a JSON payload; check that the body is valid JSON.",
            code="invalid_json",
        )
    param = _param(first.get("loc", ()))
    if param is None:
        return InvalidRequestError("the request body must be a JSON object", code="invalid_body")
    if kind == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    same_field = [e for e in errors if _param(e.get("loc", ())) == param]
    if len(same_field) > 1:  # a union: say what each member expected
        tags = [_split(e.get("loc", ()))[1] for e in same_field]
        expected = " or ".join(dict.fromkeys(_readable(t) for t in tags if t)) or same_field[0].get("msg", "")
        return InvalidRequestError(f"Invalid type for '{param}': expected {expected}.", param=param,
                                   code="invalid_type")
    code = "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else "invalid_value"
    return InvalidRequestError(f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param, code=code)


def _from_http(exc: StarletteHTTPException, request: Request | None) -> OmniforgeError:
    status = exc.status_code
    if status == 404:
        where = f"{request.method} {request.url.path}" if request is not None else "this URL"
        return NotFoundError(f"Unknown request URL: {where}. Check the URL for typos.", code="unknown_url")
    if status == 405:
        where = f"{request.method} {request.url.path}" if request is not None else "this URL"
        err = InvalidRequestError(f"Method not allowed: {where}.", code="method_not_allowed")
        err.status_code = 405  # type: ignore[misc]
        return err
    if status == 413:
        return PayloadTooLargeError(str(exc.detail))
    if status == 401:
        return AuthenticationError(str(exc.detail))
    if status == 429:
        return RateLimitError(str(exc.detail))
    if status == 503:
        return OverloadedError(str(exc.detail))
    err = OmniforgeError(str(exc.detail)) if status >= 500 else InvalidRequestError(str(exc.detail))
    err.status_code = status  # type: ignore[misc]  # keep the status the framework chose
    return err


def to_error(exc: BaseException, request: Request | None = None) -> OmniforgeError:
    """Any exception a request can raise, as an OmniforgeError."""
    if isinstance(exc, OmniforgeError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _from_validation(exc)
    if isinstance(exc, StarletteHTTPException):
        return _from_http(exc, request)
    log.exception("unexpected error while serving a request", exc_info=exc)
    return OmniforgeError(
        f"The server had an error while processing your request ({type(exc).__name__}); see the server log.",
        code="internal_error",
    )


def error_response(err: OmniforgeError) -> JSONResponse:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    return JSONResponse(err.to_openai(), status_code=err.status_code, headers=headers)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    response = error_response(to_error(exc, request))
    model_id = getattr(request.state, "model_id", None)  # set by a route once it resolved the model
    if model_id:
        response.headers[MODEL_HEADER] = model_id
    return response


def install(app: FastAPI) -> None:
    """Route every failure through `_handle`."""
    for kind in (OmniforgeError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _handle)
