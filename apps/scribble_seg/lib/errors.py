"""Errors that reach the client as HTTP 4xx with a message (MONAI Label turns anything else
raised in a task into a bare 500 "Internal Server Error")."""

from fastapi import HTTPException


class RequestError(HTTPException):
    """A request the server cannot honour as sent; ``status_code`` 4xx, ``detail`` says why."""

    def __init__(self, detail: str, status_code: int = 422):
        super().__init__(status_code=status_code, detail=detail)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"
