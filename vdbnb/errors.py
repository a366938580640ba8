"""One exception hierarchy, named as the official ``videodb`` SDK names them.

Every message says what happened and what to do about it.
"""
from __future__ import annotations


class VideodbError(Exception):
    """Base class of every vdbnb error (named as the official SDK's base)."""

    def __init__(self, message: str = "", cause: object | None = None):
        super().__init__(message)
        self.message = message
        self.cause = cause

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class AuthenticationError(VideodbError):
    """The API key or token was missing, wrong, expired or not allowed for this call."""


class InvalidRequestError(VideodbError):
    """The server refused the request (4xx) or answered success=false."""

    def __init__(self, message: str = "", cause: object | None = None, status_code: int | None = None,
                 error_code: str | None = None):
        super().__init__(message, cause)
        self.status_code = status_code
        self.error_code = error_code


class SearchError(VideodbError):
    """A search could not be run."""


class ServerError(VideodbError):
    """The server failed (5xx) or could not be reached/started."""


class CaptureError(VideodbError):
    """The recorder reported an error or could not be started."""
