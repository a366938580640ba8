"""A small HTTP core over httpx: VideoDB's envelopes and errors, one place."""
from __future__ import annotations

from typing import Any

import httpx

from .. import __version__
from ..errors import AuthenticationError, InvalidRequestError, ServerError

DEFAULT_TIMEOUT = 30.0


class HttpClient:
    def __init__(self, api_key: str, base_url: str, timeout: float = DEFAULT_TIMEOUT, **headers: str):
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        extra = {("x-" + k.lower().replace("_", "-")): str(v) for k, v in headers.items()}
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers={
            "x-access-token": api_key, "x-videodb-client": f"vdbnb-python/{__version__}", **extra})

    def request(self, method: str, path: str, json: Any = None, params: dict | None = None,
                content: bytes | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        body = None if json is None else {k: v for k, v in json.items()} if isinstance(json, dict) else json
        try:
            try:
                r = self.http.request(method, "/" + path.lstrip("/"), json=body, params=params, content=content)
            except httpx.ConnectError:
                if not self._reconnect():
                    raise
                r = self.http.request(method, "/" + path.lstrip("/"), json=body, params=params, content=content)
        except httpx.ConnectError as e:
            raise ServerError(f"Cannot reach {self.base_url} ({e}). Is the server running? `vdbnb serve` "
                              "starts one; vdbnb.connect() with no URL starts the embedded one.") from None
        except httpx.TimeoutException:
            raise ServerError(f"{method} {path} timed out after {self.http.timeout.read}s; the server may be "
                              "overloaded — retry, or check its log.") from None
        return self._parse(r)

    def _reconnect(self) -> bool:
        """Called when the server refused the connection; True if a server is reachable again (subclasses that
        know how to start one, e.g. the embedded server of a data dir)."""
        return False

    def _use_url(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http.base_url = self.base_url

    @staticmethod
    def _parse(r: httpx.Response) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400:
            msg = (body or {}).get("message") if isinstance(body, dict) else None
            msg = msg or r.text[:300] or r.reason_phrase
            code = (body or {}).get("error_code") if isinstance(body, dict) else None
            if r.status_code == 401:
                raise AuthenticationError(f"Error: {msg}", r)
            if r.status_code >= 500:
                raise ServerError(f"Server error {r.status_code}: {msg}", r)
            raise InvalidRequestError(f"Invalid request: {msg}", r, status_code=r.status_code, error_code=code)
        if isinstance(body, dict) and body.get("success") is False:
            raise InvalidRequestError(f"Invalid request: {body.get('message')}", r, status_code=r.status_code,
                                      error_code=body.get("error_code"))
        if isinstance(body, dict) and "data" in body:
            return body["data"]
        return body

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, data: dict | None = None, **params) -> Any:
        return self.request("POST", path, json=data if data is not None else {}, params=params)

    def patch(self, path: str, data: dict | None = None) -> Any:
        return self.request("PATCH", path, json=data or {})

    def close(self) -> None:
        self.http.close()
