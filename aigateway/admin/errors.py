"""The one error the admin UI and API answer with: a status, a sentence for people and, for forms,
a message per field."""

from __future__ import annotations


class AdminError(Exception):
    """An admin request that cannot be done: HTTP status, a sentence for people, and per-field
    messages for forms (``{"name": "must not be empty"}``)."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after


def bad_fields(fields: dict[str, str]) -> AdminError:
    """A 400 naming every bad field; nothing was saved."""
    return AdminError(400, "Please correct the highlighted fields; nothing was saved.", fields)
