"""Write openapi/openapi.yaml from openapi/src/ (or, with --check, fail if it is out of date)."""

import argparse
import sys
from pathlib import Path

from tessera.web.spec_bundle import build_bundle, dump

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "openapi" / "src"
OUT = ROOT / "openapi" / "openapi.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the bundle is stale")
    args = parser.parse_args()
    text = dump(build_bundle(SRC))
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print("openapi/openapi.yaml is out of date: run `make bundle`", file=sys.stderr)
            return 1
        print("openapi/openapi.yaml is up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
