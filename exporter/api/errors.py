"""The anchor's error format (drf-standardized-errors), raised anywhere in a request."""

from __future__ import annotations

from aiohttp import web

_TYPES = {400: "validation_error", 401: "client_error", 403: "client_error", 404: "client_error"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, attr: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.attr = attr

    def response(self) -> web.Response:
        body = {
            "type": _TYPES.get(self.status, "client_error"),
            "errors": [{"code": self.code, "detail": self.detail, "attr": self.attr}],
        }
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return web.json_response(body, status=self.status, headers=headers)


def invalid(attr: str, detail: str) -> ApiError:
    return ApiError(400, "invalid", detail, attr)
