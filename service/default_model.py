"""Reports which model ``make serve`` will serve (the shipped zoo provides one later)."""

from __future__ import annotations

import logging

import zoo

log = logging.getLogger("sslzoo.serve")


def main() -> None:
    """Log the registry the service will read and what it holds."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    entries = zoo.list_models()
    log.info("registry %s holds %d model version(s)", zoo.sslzoo_home(), len(entries))


if __name__ == "__main__":
    main()
