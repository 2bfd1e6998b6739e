"""`/api/events/stream`: every event of the caller's containers in one stream, for dashboards."""

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent

from infrahaus_api.auth import CurrentUser
from infrahaus_api.resources import AppResources
from infrahaus_api.sse import EventStream, LastEventId, parse_last_event_id, stream_spec
from infrahaus_domain.events.schemas import EventRead, EventType
from infrahaus_domain.events.service import EventService


class EventStreamController(Controller):
    path = "/events"
    tags = ["events"]

    @get(
        "/stream",
        operation_id="streamEvents",
        summary="Follow every event of your containers (Server-Sent Events)",
        description=(
            "Container state changes, operation progress and completion of every container you own, as they "
            "commit: one stream for a whole dashboard. Every item is an unnamed event whose `data` is an "
            "`EventRead` (its `type` says what happened; `container` and `operation` give the state right after "
            "it). Ids are positions in one global order: reconnect with `Last-Event-ID` (a browser does it by "
            "itself) to get exactly the events after it, from the stored trail, with no gap and no duplicate — "
            "also those of containers deleted meanwhile. Without it the stream starts now, or after `after`. "
            "Log lines are only on a container's progress stream. The stream starts with a `retry:` hint and "
            "sends a comment every `INFRAHAUS_SSE_HEARTBEAT_SECONDS`; it never ends by itself."
        ),
        media_type="text/event-stream",
        responses={200: stream_spec(EventRead, "The stream; every `data` is an `EventRead`.")},
    )
    async def stream_events(
        self,
        current_user: CurrentUser,
        events: EventService,
        resources: AppResources,
        container_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this container's events.")] = None,
        node_id: Annotated[
            uuid.UUID | None, QueryParameter(description="Only events of this node's containers.")
        ] = None,
        type: Annotated[
            list[EventType] | None, QueryParameter(description="Only these event types (repeat the parameter).")
        ] = None,
        after: Annotated[
            int | None,
            QueryParameter(ge=0, description="Start after this position (`0`: every stored event); default: now."),
        ] = None,
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        if last_event_id is not None:
            start = parse_last_event_id(last_event_id)
        elif after is not None:
            start = after
        else:
            # Decided before the answer starts: whatever commits after the client sees the stream open is sent.
            start = await events.last_position(current_user.id)
        http = resources.settings.http
        stream = EventStream(
            current_user.id,
            after=start,
            resources=resources,
            heartbeat=http.sse_heartbeat_seconds,
            retry_ms=http.sse_retry_ms,
            container_id=container_id,
            node_id=node_id,
            types=type or (),
        )
        return ServerSentEvent(stream.__aiter__(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
