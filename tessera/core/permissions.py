"""The permission catalog and the built-in roles, and the one rule of what a set of permissions
grants. Operations name the permission they need in the spec (`x-permission`); the caller's
permissions come from their roles (models.identity.roles) or their key's scopes."""

from __future__ import annotations

# The permission catalog. Operations name the one they need in the spec (`x-permission`).
PERMISSIONS: dict[str, str] = {
    "users:read": "Read users of the organization",
    "users:write": "Create and update users",
    "users:delete": "Delete users",
    "organizations:read": "Read the organization",
    "organizations:write": "Update the organization",
    "members:read": "List members and invitations",
    "members:write": "Invite, update and remove members",
    "projects:read": "Read projects",
    "projects:write": "Create and update projects",
    "projects:delete": "Delete projects",
    "files:read": "Read and download files, and create temporary download links",
    "files:write": "Upload files, and delete the ones they uploaded",
    "keys:read": "List API keys",
    "keys:manage": "Create, rotate and revoke API keys",
    "roles:read": "Read roles and the permission audit",
    "roles:write": "Create, change and grant roles",
    "sessions:read": "List other users' sessions",
    "sessions:manage": "Revoke other users' sessions and unlock accounts",
    "events:read": "Read the organization's events",
    "audit:read": "Read, verify and export the audit log",
    "webhooks:manage": "Manage webhook endpoints and deliveries",
    "admin": "Everything, including organization deletion",
}

ADMIN = "admin"
_ALL = sorted(PERMISSIONS)
_READS = [
    "users:read",
    "organizations:read",
    "members:read",
    "projects:read",
    "roles:read",
    "files:read",
]

# Built-in roles, shared by every organization. Their rows (org_id NULL) exist for grants to
# reference (id `rol_<name>`); their descriptions and permissions are defined here, in code.
SYSTEM_ROLES: dict[str, tuple[str, list[str]]] = {
    "owner": ("Owns the organization: every permission.", _ALL),
    "admin": ("Administers the organization: every permission.", _ALL),
    "editor": (
        "Creates projects and edits the projects they own; uploads files.",
        [*_READS, "projects:write", "files:write"],
    ),
    "viewer": ("Reads the organization's users, projects and files.", _READS),
}

# The role an organization always keeps one holder of.
OWNER = "owner"


def grants(permissions: set[str], needed: str) -> bool:
    return ADMIN in permissions or needed in permissions
