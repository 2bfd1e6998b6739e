"""Errors of containers and their operations, one stable code each."""

from infrahaus_domain.errors import ConflictError, DomainError, FieldError, ValidationFailed


class ContainerBusyError(ConflictError):
    """Another operation of the container is queued or running."""

    code = "container_busy"


class InvalidStateError(ConflictError):
    """The container's lifecycle or live status does not allow the action."""

    code = "invalid_state"


class NoNodeConfiguredError(ConflictError):
    """The user has no node (or no default node) to create containers on."""

    code = "no_node_configured"


class IdempotencyKeyReusedError(ValidationFailed):
    """The `Idempotency-Key` was already used with a different request body."""

    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            [FieldError(field="Idempotency-Key", message="Already used with a different request body.")],
            "This Idempotency-Key was already used with a different request.",
        )


class OperationCancelledError(DomainError):
    """Raised to the worker by `OperationService.progress` when the operation was cancelled (e.g. by a delete)."""

    code = "operation_cancelled"
