"""The bash helper library that every template script is sourced after."""

from functools import cache
from pathlib import Path

HELPERS_PATH = Path(__file__).with_name("infrahaus-helpers.sh")


@cache
def helpers_script() -> bytes:
    """The helper library's text, as pushed into containers."""
    return HELPERS_PATH.read_bytes()
