"""Copy Redoc's standalone bundle from npm into tessera/web/static/redoc/, so /redoc works without
node_modules or a CDN at run time.

Redoc 2.x: MIT, one 1.1 MB file. Redoc 3 is twice the size and reports client telemetry by
default, so it is not used. Run again after changing VERSION: `python scripts/vendor_redoc.py`.
"""

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.5.4"
FILES = {
    "package/bundles/redoc.standalone.js": "redoc.standalone.js",
    "package/bundles/redoc.standalone.js.LICENSE.txt": "THIRD-PARTY-NOTICES.txt",
    "package/LICENSE": "LICENSE",
}
TARGET = Path(__file__).resolve().parent.parent / "tessera" / "web" / "static" / "redoc"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        # npm checks the tarball against the registry's integrity hash.
        packed = subprocess.run(
            ["npm", "pack", f"redoc@{VERSION}", "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with tarfile.open(Path(tmp) / packed) as archive:
            archive.extractall(tmp, filter="data")
        TARGET.mkdir(parents=True, exist_ok=True)
        for source, name in FILES.items():
            shutil.copyfile(Path(tmp) / source, TARGET / name)
    (TARGET / "VERSION").write_text(f"redoc {VERSION} (npm), MIT\n")
    digest = hashlib.sha256((TARGET / "redoc.standalone.js").read_bytes()).hexdigest()
    print(f"vendored redoc {VERSION} into {TARGET} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
