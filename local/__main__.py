"""`python -m local run|aws|api|worker|console`: the offline stack, whole or one piece at a time."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from chalicelib.errors import SettingsError
from local.api import ApiError
from local.aws import EndpointError
from local.config import ConfigError, load_config
from local.lifecycle import configure_logging, ignore_stop_signals, stop_on_signals
from local.pieces import run_api, run_aws, run_console, run_worker
from local.runner import run

PIECES = {"run": run, "aws": run_aws, "api": run_api, "worker": run_worker, "console": run_console}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("piece", choices=sorted(PIECES), help="run: everything; aws, api, worker, console: one piece")
    # Set by `run` for its children: ignore Ctrl-C (the supervisor stops them in order) and
    # stop when the supervisor goes away.
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    configure_logging()
    stop = threading.Event()
    stop_on_signals(stop, supervised=args.supervised)
    try:
        config = load_config()
        return PIECES[args.piece](config, stop)
    except (ConfigError, EndpointError, ApiError, SettingsError) as exc:
        logging.getLogger("local").error("%s", exc)
        return 2
    finally:
        ignore_stop_signals()


if __name__ == "__main__":
    sys.exit(main())
