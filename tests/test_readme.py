"""The README's opening paragraph, which a newcomer reads first, names only what exists."""

from __future__ import annotations

import re

from tessera.core.settings import ROOT
from tessera.web.contract import get_contract

# Words of the product's planned modules, and the contract tag each module's operations carry.
PLANNED = {
    "notification": "notifications",
    "file": "files",
    "import": "bulk",
    "billing": "billing",
    "payment": "billing",
    "admin": "admin",
    "polic": "access",
    "acl": "access",
    "course": "courses",
    "chat": "chat",
    "execution": "executions",
}


def _opening_paragraph() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n\n")[1].lower()


def test_the_opening_paragraph_promises_only_modules_with_operations():
    tags = {tag for op in get_contract().operations.values() for tag in op.spec.get("tags", [])}
    paragraph = _opening_paragraph()
    promised = {tag for word, tag in PLANNED.items() if re.search(rf"\b{word}", paragraph)}
    assert promised <= tags, f"the README names modules with no operations: {promised - tags}"
