"""`python -m infrahaus_pvesim` (console script `pvesim`): the simulator on its own, as `infrahaus pvesim` runs it."""

import argparse
import sys

from infrahaus_pvesim import command


def main() -> int:
    parser = argparse.ArgumentParser(prog="pvesim", description="Run the Proxmox VE simulator (HTTPS API + SSH host).")
    command.add_arguments(parser)
    return command.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
