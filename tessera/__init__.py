"""Tessera runtime: settings, app factory, middleware, errors, data access and CLI.

The API's handlers, models and workers live in the sibling packages `handlers`, `models` and
`workers`; this package holds what every one of them shares.
"""
