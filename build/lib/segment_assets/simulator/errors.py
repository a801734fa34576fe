"""The API's error envelope as an exception the HTTP layer turns into a response."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        type_: str | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.type = type_ or {
            400: "bad-request",
            401: "unauthorized",
            403: "forbidden",
            404: "not-found",
            422: "input-validation",
            429: "RequestError",
        }.get(status, "server-error")
        self.data = data
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.data is not None:
            error["data"] = self.data
        if self.status not in (429,):
            error["status"] = self.status
        return {"errors": [error]}


def not_found(what: str = "Resource") -> ApiError:
    return ApiError(404, f"{what} not found")


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, message, field=field)
