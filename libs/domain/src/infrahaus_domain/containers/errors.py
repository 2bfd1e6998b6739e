"""Errors of containers and their operations, one stable code each."""

from infrahaus_domain.containers.placement_schemas import PlacementDecision
from infrahaus_domain.errors import ConflictError, DomainError
from infrahaus_domain.idempotency import IdempotencyKeyReusedError


class ContainerBusyError(ConflictError):
    """Another operation of the container is queued or running."""

    code = "container_busy"


class InvalidStateError(ConflictError):
    """The container's lifecycle or live status does not allow the action."""

    code = "invalid_state"


class NoNodeConfiguredError(ConflictError):
    """The user has no node (or no default node) to create containers on."""

    code = "no_node_configured"


class OperationCancelledError(DomainError):
    """Raised to the worker by `OperationService.progress` when the operation was cancelled (e.g. by a delete)."""

    code = "operation_cancelled"


__all__ = [
    "ContainerBusyError",
    "IdempotencyKeyReusedError",
    "InvalidStateError",
    "NoEligibleNodeError",
    "NoNodeConfiguredError",
    "NoTemplateError",
    "OperationCancelledError",
    "OwnershipMismatchError",
]


class OwnershipMismatchError(ConflictError):
    """The guest on the node does not carry this container's ownership marker: infrahaus does not touch it."""

    code = "ownership_mismatch"


class NoTemplateError(ConflictError):
    """The container has no template (revision) to compare with or sync to."""

    code = "no_template"


class NoEligibleNodeError(ConflictError):
    """Placement found no node to create the container on; `placement` says why each node was refused."""

    code = "no_eligible_node"

    def __init__(self, placement: PlacementDecision) -> None:
        super().__init__(placement.reason)
        self.placement = placement
