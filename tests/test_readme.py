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


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_the_layout_section_names_every_package_and_domain():
    layout = _layout_block()
    listed = {line.split()[0] for line in layout.splitlines() if line and not line[0].isspace()}
    runtime = {
        f"{path.relative_to(ROOT)}/"
        for path in (ROOT / "tessera").iterdir()
        if (path / "__init__.py").exists()
    }
    expected = runtime | {"tessera/cli.py", "models/<domain>/", "workers/", "handlers/"}
    assert expected <= listed, f"the README's layout does not name {expected - listed}"
    domains = sorted(
        path.name for path in (ROOT / "models").iterdir() if (path / "__init__.py").exists()
    )
    described = layout.split("models/<domain>/", 1)[1].split("\nworkers/", 1)[0]
    missing = [name for name in domains if not re.search(rf"\b{name}\b", described)]
    assert not missing, f"the README's layout does not name the domains {missing}"
