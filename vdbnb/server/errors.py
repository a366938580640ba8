"""HTTP errors in VideoDB's envelope: ``{"success": false, "message", "error_code"}``."""
from __future__ import annotations


class APIError(Exception):
    def __init__(self, status: int, message: str, error_code: str = "INVALID_REQUEST"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def body(self) -> dict:
        return {"success": False, "message": self.message, "error_code": self.error_code}


def unauthorized(msg: str, code: str = "INVALID_TOKEN") -> APIError:
    return APIError(401, msg, code)


def forbidden(msg: str, code: str = "FORBIDDEN") -> APIError:
    return APIError(403, msg, code)


def not_found(what: str, ident: str) -> APIError:
    return APIError(404, f"{what} {ident!r} not found. Check the id (list them with the matching list call).",
                    f"{what.upper().replace(' ', '_')}_NOT_FOUND")


def bad_request(msg: str, code: str = "INVALID_REQUEST") -> APIError:
    return APIError(400, msg, code)


def conflict(msg: str, code: str = "INVALID_STATE") -> APIError:
    return APIError(409, msg, code)
