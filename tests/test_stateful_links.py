"""The OpenAPI links schemathesis' stateful phase follows: every core resource's create leads to
reading, changing and deleting what it created, with the id taken from the response."""

from __future__ import annotations

import pytest
import yaml

from tessera.web.contract import SPEC_PATH

DOC = yaml.safe_load(SPEC_PATH.read_text())
OPERATIONS = {
    op["operationId"]: op
    for item in DOC["paths"].values()
    for method, op in item.items()
    if method in ("get", "put", "post", "patch", "delete")
}

# create -> (get, change, delete), and the path parameter the created id fills.
CHAINS = {
    "create_user": (("get_user", "update_user", "delete_user"), "user_id"),
    "create_project": (("get_project", "update_project", "delete_project"), "project_id"),
    "create_key": (("get_key", "rotate_key", "revoke_key"), "key_id"),
    "create_role": (("get_role", "update_role", "delete_role"), "role_id"),
    "create_organization": (
        ("get_organization", "update_organization", "delete_organization"),
        "org_id",
    ),
}


@pytest.mark.parametrize("create", sorted(CHAINS))
def test_create_links_to_get_change_and_delete(create):
    targets, parameter = CHAINS[create]
    links = OPERATIONS[create]["responses"]["201"].get("links", {}).values()
    linked = {link["operationId"]: link["parameters"] for link in links if "operationId" in link}
    for target in targets:
        assert target in OPERATIONS, target
        assert linked.get(target) == {parameter: "$response.body#/data/id"}, (create, target)
