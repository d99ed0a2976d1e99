"""What a first `make run` meets: the address it serves is the one its tokens, metadata and mails
name, and the embedded PostgreSQL lives and dies with the server."""

from __future__ import annotations

import httpx
import jwt

from tests.support.factories import PASSWORD, unique_email
from tests.support.services import ServerProcess


def test_a_server_on_another_port_names_that_port_in_its_metadata_and_tokens(test_env, tmp_path):
    env = {**test_env, "TESSERA_PUBLIC_URL": "", "TESSERA_JWT_ISSUER": "", "PORT": "8080"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        assert server.port != 8080
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            metadata = http.get("/.well-known/oauth-authorization-server").json()
            email = unique_email("port")
            body = {"email": email, "password": PASSWORD, "display_name": "P"}
            assert http.post("/v1/auth/register", json=body).status_code == 201
            login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            token = login.json()["data"]["access_token"]
            # The token is accepted by the server that issued it for its own issuer.
            headers = {"Authorization": f"Bearer {token}"}
            assert http.get("/v1/users/me", headers=headers).status_code == 200
    finally:
        server.stop()
    assert metadata["issuer"] == server.base_url
    urls = {key: value for key, value in metadata.items() if key.endswith(("_endpoint", "_uri"))}
    assert urls and all(url.startswith(server.base_url + "/") for url in urls.values()), urls
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == server.base_url
