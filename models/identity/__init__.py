"""Identity: users, organizations (tenants), their members, invitations and roles.

Each module imports only modules of the lines above it, at module level:

    tables          every table of the domain
    roles           the built-in and custom roles, their permissions, the permission audit
    ownership       the one last-owner rule
    sign_ins        the four calls identity makes into `models.signin`, the domain above it
                    (the only module that reaches it)
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

`first_admin` is the operator's task of creating the first account.
"""
