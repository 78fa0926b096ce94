"""The shared entry point of the thin scripts in ``stages/``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from mcap.errors import McapError
from mcap.params import Params

log = logging.getLogger("mcap")


def run_stage(main: Callable[[Params, argparse.Namespace], None], *arguments: str,
              flags: tuple[str, ...] = ()) -> None:
    """Parse ``--name value`` arguments (and ``--flag`` switches), load params.yaml and run ``main(params, args)``.

    A :class:`McapError` becomes one ``error: ...`` line on stderr and exit status 2.
    """
    parser = argparse.ArgumentParser()
    for name in arguments:
        parser.add_argument(f"--{name}", required=True)
    for flag in flags:
        parser.add_argument(f"--{flag}", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # its load report flags the new classifier head, which is expected
    try:
        main(Params.load(), args)
    except McapError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
