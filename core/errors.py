"""Parley's error hierarchy: every error a client can see carries a stable ``code``."""

from __future__ import annotations


class ParleyError(Exception):
    """Base of every error Parley raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s  # when trying again makes sense (busy, server_shutdown)

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(ParleyError):
    """The configuration is invalid or names something that does not exist."""

    code = "config_error"


class ModelLoadError(ParleyError):
    """A model or backend could not be prepared or loaded at start."""

    code = "model_load_failed"


class BackendError(ParleyError):
    """A backend failed while serving one turn; the call goes on."""

    code = "backend_error"


class SignalingError(ParleyError):
    """A client sent something the signaling protocol cannot accept."""

    code = "bad_request"


class NotFoundError(ParleyError):
    """A room (or another named thing) does not exist."""

    code = "not_found"


class ConflictError(ParleyError):
    """The request conflicts with what exists (a room id already taken)."""

    code = "conflict"


class LimitError(ParleyError):
    """A configured limit (rooms, participants, calls) would be exceeded."""

    code = "limit_reached"


class AuthError(ParleyError):
    """A missing, expired, forged or misdirected credential."""

    code = "unauthorized"


class ForbiddenError(AuthError):
    """A valid request for something this credential (or this route) may not have."""

    code = "forbidden"


class UnavailableError(ParleyError):
    """A service this request needs (the cluster's registry) cannot be reached now; try again later."""

    code = "unavailable"
