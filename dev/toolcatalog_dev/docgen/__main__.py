"""python -m toolcatalog_dev.docgen [--check] [--out DIR]: write (or check) the generated reference pages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import REFERENCE, REPO, differences, write


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m toolcatalog_dev.docgen", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / REFERENCE, help="directory (default docs/reference)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    args = parser.parse_args()
    if args.check:
        stale = differences(args.out)
        for name in stale:
            print(f"stale: {name} (regenerate with `make docs-gen`)", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
