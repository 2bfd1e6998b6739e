"""Failures of pipeline steps and lifecycle actions, each with a stable code (`FailureCode`).

`StepError` is what the steps raise once they know what went wrong; `classify` turns any other exception
(Proxmox, SSH, timeouts) into one through `infrahaus_domain.proxmox_errors`. Details are built from library
messages, which never carry secrets, and never from a request body.
"""

from typing import Any

import msgspec

from infrahaus_domain.proxmox_errors import REMEDIES, FailureCode, classify_text, failure_code, tail


class FailureInfo(msgspec.Struct, kw_only=True):
    """The `error` object of a failed operation: code, detail, remedy and optional specifics."""

    code: FailureCode
    detail: str
    remedy: str | None = None
    step: str | None = None
    exit_code: int | None = None
    task_log_tail: list[str] | None = None
    last_lines: list[str] | None = None
    manager: str | None = None
    script: str | None = None
    # The Proxmox parameter a `validation_failed` is about.
    field: str | None = None


class StepError(Exception):
    """A classified failure raised by a pipeline step or lifecycle action."""

    def __init__(self, info: FailureInfo) -> None:
        super().__init__(f"{info.code}: {info.detail}")
        self.info = info

    @classmethod
    def of(cls, code: FailureCode, detail: str, **extra: Any) -> "StepError":
        return cls(FailureInfo(code=code, detail=detail, remedy=REMEDIES.get(code), **extra))


def classify(exc: BaseException, *, step: str | None = None) -> FailureInfo:
    """Turn any exception raised while working on a container into a classified failure."""
    if isinstance(exc, StepError):
        info = exc.info
        return info if info.step or step is None else msgspec.structs.replace(info, step=step)
    code, extra = failure_code(exc)
    detail = str(exc) or type(exc).__name__
    if code == "internal_error":
        # An unexpected exception's text may quote anything; only its type is safe to show.
        detail = f"unexpected {type(exc).__name__}"
    return FailureInfo(code=code, detail=detail, remedy=REMEDIES.get(code), step=step, **extra)


__all__ = ["REMEDIES", "FailureInfo", "StepError", "classify", "classify_text", "tail"]
