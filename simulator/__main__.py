"""``python -m genqueue.simulator --port 8008 --predict-seconds 2 --fault-5xx 0.05``"""

from __future__ import annotations

import argparse

from genqueue.simulator.cli_args import add_arguments, config_from_args
from genqueue.simulator.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m genqueue.simulator", description="Replicate API simulator")
    add_arguments(parser)
    parser.add_argument("--log-level", default="info")
    ns = parser.parse_args(argv)
    serve(ns.host, ns.port, config_from_args(ns), log_level=ns.log_level)


if __name__ == "__main__":
    main()
