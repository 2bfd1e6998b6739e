import json
import logging
import sys

import pytest

from infrahaus_domain.logs import REDACTED, JsonFormatter, log_context, redact, redact_text


def _format(record_msg: str, **extra: object) -> dict[str, object]:
    logger = logging.getLogger("infrahaus.test")
    record = logger.makeRecord("infrahaus.test", logging.INFO, __file__, 1, record_msg, (), None, extra=extra)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def test_json_line_carries_context_ids() -> None:
    with log_context(request_id="req-1", operation_id="op-2", actor="container.create"):
        line = _format("hello")
    assert line["message"] == "hello"
    assert line["request_id"] == "req-1"
    assert line["operation_id"] == "op-2"
    assert line["actor"] == "container.create"
    assert "request_id" not in _format("after the block")


@pytest.mark.parametrize("key", ["password", "token_secret", "ssh_private_key", "Authorization", "csrf_token"])
def test_secret_fields_are_redacted(key: str) -> None:
    line = _format("login", **{key: "s3cr3t-value"})
    assert line[key] == REDACTED
    assert "s3cr3t-value" not in json.dumps(line)


def test_nested_structures_are_redacted() -> None:
    data = {"node": {"host": "pve", "token_secret": "abc"}, "items": [{"password": "x"}]}
    assert redact(data) == {"node": {"host": "pve", "token_secret": REDACTED}, "items": [{"password": REDACTED}]}


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("header PVEAPIToken=root@pam!infrahaus=9f1c-aa", "9f1c-aa"),
        ("Cookie: PVEAuthCookie=PVE:root@pam:ABC::sig", "PVE:root@pam:ABC::sig"),
        ("Authorization: Bearer ihs_abc_def", "ihs_abc_def"),
        ("key -----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY----- end", "AAAA"),
    ],
)
def test_secret_shapes_in_free_text_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact_text(text)
    assert secret not in json.dumps(_format(text))


def test_exception_text_is_not_logged() -> None:
    logger = logging.getLogger("infrahaus.test")
    try:
        raise RuntimeError("upstream body with token=abc")
    except RuntimeError:
        record = logger.makeRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "RuntimeError"
    assert "upstream body" not in json.dumps(line)
