"""Unstract's error format (drf-standardized-errors), raised anywhere in a request, and the
same JSON for every other error the service answers (404, 405, malformed requests, 5xx)."""

from __future__ import annotations

import json

from aiohttp import web

_TYPES = {400: "validation_error"}


def error_body(status: int, code: str, detail: str, attr: str | None = None) -> bytes:
    kind = _TYPES.get(status) or ("server_error" if status >= 500 else "client_error")
    errors = [{"code": code, "detail": detail, "attr": attr}]
    # `message`: the human text Unstract's frontend shows on an error (issue 12).
    return json.dumps({"type": kind, "errors": errors, "message": detail}).encode()


def error_response(
    status: int,
    code: str,
    detail: str,
    attr: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        body=error_body(status, code, detail, attr),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, attr: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.attr = attr

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return error_response(self.status, self.code, self.detail, self.attr, headers)


def invalid(attr: str, detail: str) -> ApiError:
    return ApiError(400, "invalid", detail, attr)
