"""The one error tree: every failure omniforge reports, with its HTTP status and OpenAI error type.

    OmniforgeError                      500 server_error
    ├── InvalidRequestError             400 invalid_request_error
    │   ├── ContextLengthExceededError  400 invalid_request_error (code context_length_exceeded)
    │   └── UnsupportedMediaError       400 invalid_request_error (code unsupported_media)
    ├── AuthenticationError             401 authentication_error
    ├── PermissionDeniedError           403 permission_error (code scope_denied): outside the key's scopes
    ├── NotFoundError                   404 invalid_request_error
    │   └── ModelNotFoundError          404 invalid_request_error (code model_not_found)
    ├── PayloadTooLargeError            413 invalid_request_error (code payload_too_large)
    ├── RateLimitError                  429 rate_limit_error (Retry-After)
    ├── OverloadedError                 503 server_overloaded (Retry-After)
    ├── MissingDependencyError          500 server_error: an optional extra is not installed
    └── ModelLoadError                  500 server_error: weights missing or unreadable

The server turns any of these into OpenAI's JSON error shape in one handler
(server/errors.py); the CLI prints `error: <message>` and exits 1 (cli/main.py).
"""

from __future__ import annotations

from typing import Any


class OmniforgeError(Exception):
    """Base of every error omniforge raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after

    def to_openai(self) -> dict[str, Any]:
        """The body OpenAI's API returns for an error: {"error": {message, type, param, code}}."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(OmniforgeError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    default_code = "context_length_exceeded"


class UnsupportedMediaError(InvalidRequestError):
    default_code = "unsupported_media"


class AuthenticationError(OmniforgeError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(OmniforgeError):
    """A valid API key asking for an endpoint, model or modality outside its scopes."""

    status_code = 403
    error_type = "permission_error"
    default_code = "scope_denied"


class LicenseNotAcceptedError(PermissionDeniedError):
    """A model whose license terms must be accepted (the `accept_licenses` setting) before it is served."""

    default_code = "license_not_accepted"


class ContentPolicyError(InvalidRequestError):
    """An input or output that breaks the content policy (governance/policy.py)."""

    default_code = "content_policy_violation"


class NotFoundError(OmniforgeError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"


class PayloadTooLargeError(OmniforgeError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class RateLimitError(OmniforgeError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BudgetExceededError(RateLimitError):
    """A request that would take a key's or project's spending past its budget."""

    error_type = "insufficient_quota"
    default_code = "budget_exceeded"


class OverloadedError(OmniforgeError):
    status_code = 503
    error_type = "server_overloaded"
    default_code = "server_overloaded"


class MissingDependencyError(OmniforgeError):
    default_code = "missing_dependency"


class ModelLoadError(OmniforgeError):
    default_code = "model_load_failed"
