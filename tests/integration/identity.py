"""A Keystone v3 client for the tests: it makes projects and users, and logs them in.

It speaks only the v3 API, so it works the same against Cellar's own identity API (the
embedded profile) and against a real Keystone (the production profile).
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import requests

TIMEOUT = 30


@dataclasses.dataclass
class Login:
    token: str
    project_id: str
    user_id: str


def openrc(path: Path) -> dict[str, str]:
    """The variables an ``admin-openrc`` exports."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = value.strip("'\"")
    return found


class Identity:
    def __init__(self, auth_url: str, user: str, password: str, project: str) -> None:
        self.url = auth_url.rstrip("/")
        self.http = requests.Session()
        self.admin = self.login(user, password, project)

    @classmethod
    def from_openrc(cls, path: Path) -> Identity:
        env = openrc(path)
        return cls(
            env["OS_AUTH_URL"], env["OS_USERNAME"], env["OS_PASSWORD"], env["OS_PROJECT_NAME"]
        )

    def login(self, user: str, password: str, project: str) -> Login:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"id": "default"}, "password": password}
                    },
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        reply = self.http.post(f"{self.url}/auth/tokens", json=body, timeout=TIMEOUT)
        reply.raise_for_status()
        token = reply.json()["token"]
        return Login(reply.headers["X-Subject-Token"], token["project"]["id"], token["user"]["id"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-Auth-Token": self.admin.token}
        reply = self.http.request(
            method, self.url + path, headers=headers, timeout=TIMEOUT, **kwargs
        )
        reply.raise_for_status()
        return reply

    def role_id(self, name: str) -> str:
        roles = self.call("GET", "/roles", params={"name": name}).json()["roles"]
        return str(roles[0]["id"])

    def project(self, name: str) -> str:
        made = self.call(
            "POST", "/projects", json={"project": {"name": name, "domain_id": "default"}}
        )
        return str(made.json()["project"]["id"])

    def user(self, project_id: str, role: str = "member", name: str = "") -> tuple[str, str, str]:
        """A new user with ``role`` on the project: (name, password, id)."""
        name = name or f"it-user-{uuid.uuid4().hex[:10]}"
        password = f"Pw-{uuid.uuid4().hex}"
        body = {
            "user": {
                "name": name,
                "password": password,
                "domain_id": "default",
                "default_project_id": project_id,
            }
        }
        user_id = str(self.call("POST", "/users", json=body).json()["user"]["id"])
        self.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.role_id(role)}")
        return name, password, user_id

    def member_login(self, project_name: str, role: str = "member") -> Login:
        """A new project (of that name) and a new user of it with ``role``, logged in."""
        project_id = self.project(project_name)
        name, password, _ = self.user(project_id, role)
        return self.login(name, password, project_name)

    def register_service(self, kind: str, name: str, url: str, region: str = "RegionOne") -> None:
        """Put a service in a real Keystone's catalog, at ``url`` on every interface (Cellar's
        own identity API makes its catalog itself). ``url`` may hold ``%(tenant_id)s``."""
        made = self.call("POST", "/services", json={"service": {"type": kind, "name": name}})
        service_id = made.json()["service"]["id"]
        for face in ("public", "internal", "admin"):
            endpoint = {
                "service_id": service_id,
                "interface": face,
                "region_id": region,
                "url": url,
            }
            self.call("POST", "/endpoints", json={"endpoint": endpoint})
