"""The one base of domain services: advanced-alchemy's repository service over the caller's session.

A service never creates a session and never commits: the API's request session commits on a 2xx answer, the
worker's unit of work commits when its block ends, scripts commit themselves. Build services through
`infrahaus_domain.services.Services`, which wires them to each other and to the process's resources.
"""

from typing import Any, TypeVar

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.repository.typing import ModelT
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy.ext.asyncio import AsyncSession

RepositoryT = TypeVar("RepositoryT", bound=SQLAlchemyAsyncRepository[Any])


class DomainService(SQLAlchemyAsyncRepositoryService[ModelT, RepositoryT]):
    """A feature's business rules over its aggregate's repository (`repository_type`) and the caller's session."""

    def __init__(self, session: AsyncSession, **repository_options: Any) -> None:
        # advanced-alchemy builds the repository (a select() of the model, loader options, error messages) when the
        # service is made; a request whose reads are statements of their own never needs it, so it is made on
        # first use instead.
        self._session = session
        self._repository_options = repository_options
        self._repository_instance: RepositoryT | None = None  # type: ignore[assignment]

    @property
    def repository(self) -> RepositoryT:
        repository = self._repository_instance
        if repository is None:
            super().__init__(self._session, **self._repository_options)
            repository = self._repository_instance
        assert repository is not None  # set by advanced-alchemy's __init__ just above
        return repository

    @property
    def session(self) -> AsyncSession:
        """The caller's session (the unit of work this service reads and writes in)."""
        return self._session

    async def end_read(self) -> None:
        """End the read-only transaction before talking to nodes, so no connection idles in a transaction across
        network calls. Only reads may have happened; loaded objects stay usable (no expiry on commit)."""
        if self.session.new or self.session.dirty or self.session.deleted:
            raise RuntimeError("unflushed writes before a node call")
        await self.session.commit()
