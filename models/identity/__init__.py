"""Identity: users, organizations (tenants), their members, invitations and roles.

Each module imports only modules of the lines above it, at module level:

    tables          users, organizations, memberships, invitations, roles and their grants
    sign_ins        the account's sign-ins (the `sessions` table) and ending them
    lockout         failed sign-in attempts per (email, address) and the lock they set
    mfa_factors     the account's second factor and recovery codes
    roles           the built-in and custom roles, their permissions, the permission audit
    ownership       the one last-owner rule
    users           an account: create, read, representation, password
    directory       the organization's list of users
    profiles        the signed-in user's own profile and preferences
    members         joining, reading and leaving an organization
    closure         deactivating and deleting accounts
    member_roles    the roles a member holds
    invitations     invitations into an organization
    organizations   an organization's lifecycle
    provisioning    administrators creating users
    administration  administrators changing a member's account

`first_admin` is the operator's task of creating the first account. The account's credential
state (sign-ins, lockout, factors) lives here so that closing an account or an organization ends
it without reaching up; `models.signin` runs the flows that check and issue credentials.
"""
