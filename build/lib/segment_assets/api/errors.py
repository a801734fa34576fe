"""The errors the Segment client raises, one class per outcome a caller handles differently."""

from __future__ import annotations


def token_help(token_env: str = "SEGMENT_API_TOKEN") -> str:
    return (
        f"Set {token_env} to a Segment Public API token (Settings > Workspace settings > "
        "Access Management > Tokens > Create token; a Workspace Member token is enough to read). "
        "A legacy Config API token does not work with the Public API."
    )


class SegmentError(Exception):
    """Base of every error the client raises."""


class SegmentAuthError(SegmentError):
    """401: the token is missing, invalid, revoked, or lacks permission."""


class StreamUnavailable(SegmentError):
    """403, or 404 on a feature-gated endpoint: the workspace's plan or features exclude it."""

    def __init__(self, operation_id: str, status: int, message: str, feature: str | None) -> None:
        self.operation_id = operation_id
        self.status = status
        self.feature = feature
        why = f"feature '{feature}' is not enabled for this workspace" if feature else "not available to this token"
        super().__init__(f"{operation_id}: HTTP {status}, {why} ({message})")


class SegmentAPIError(SegmentError):
    """A 4xx the API explains (422 validation, 404 on an ungated endpoint...)."""


class NotFound(SegmentAPIError):
    """404 on an ungated endpoint: for a child stream, the parent vanished since it was read."""


class TransientError(SegmentError):
    """Retries ran out on 5xx, timeouts, broken connections or unreadable bodies."""


class SyncStopped(SegmentError):
    """The sync was asked to stop (SIGTERM, SIGINT, run termination): no further request is sent."""


class PaginationError(SegmentError):
    """The API sent a cursor it already sent: following it would loop forever."""
