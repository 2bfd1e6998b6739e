"""The query parameters every list endpoint shares: `limit` and `cursor` (keyset pagination)."""

from typing import Annotated

from litestar.params import QueryParameter

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]
# The live container list documents the cursor's bound (other lists refuse an over-long cursor while decoding it).
BoundedCursor = Annotated[str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")]
