"""One module per verb of the `infrahaus` command line, each with `add_arguments(parser)` and `run(args) -> int`."""

import importlib.util

# The simulator (`infrahaus_pvesim`) is a development tool: production installs leave it out (docs/adr/0009).
SIMULATOR_MISSING = (
    "the Proxmox simulator is not installed: it is a development tool that production installs leave out "
    "(in a checkout: uv sync; elsewhere: pip install 'infrahaus[demo]')"
)


def simulator_available() -> bool:
    """Whether `infrahaus_pvesim` can be imported here (it is only imported when a verb needs it)."""
    return importlib.util.find_spec("infrahaus_pvesim") is not None
