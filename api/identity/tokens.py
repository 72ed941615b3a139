"""``/identity/v3/auth/tokens``: log in (password, application credential, or an
earlier token to change its project), validate and revoke tokens.

A new token comes back in ``X-Subject-Token`` with Keystone's body: user, project,
roles, expiry and the catalog (Cellar's ``database`` service and this identity API).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue

from api import audit, auth
from api.identity.access import admin_or, caller
from api.identity.views import BASE, DOMAIN, project_view, stamp, url
from api.schemas import parse
from api.schemas.identity import LogIn
from api.state import services
from cellar.errors import InvalidInput, NotFound, Unauthorized
from cellar.identity import store
from cellar.identity.models import ApplicationCredential, Project, User
from cellar.identity.store import Identity
from cellar.identity.tokens import BadToken, TokenSealer
from cellar.models import utcnow

blueprint = Blueprint("identity_tokens", __name__)

SUBJECT = "X-Subject-Token"
METHODS = ("password", "token", "application_credential")
REGION = "RegionOne"


def _sealer() -> TokenSealer:
    sealer = auth.current().sealer
    assert sealer is not None  # the identity API is served only with Cellar's own tokens
    return sealer


def _catalog(project_id: str) -> list[dict[str, Any]]:
    base = request.host_url.rstrip("/")
    services_ = (
        ("database", "trove", f"{base}/v1.0/{project_id}"),
        ("identity", "keystone", base + BASE),
    )
    return [
        {
            "id": kind,
            "type": kind,
            "name": name,
            "endpoints": [
                {
                    "id": f"{kind}-{face}",
                    "interface": face,
                    "region": REGION,
                    "region_id": REGION,
                    "url": where,
                }
                for face in ("public", "internal", "admin")
            ],
        }
        for kind, name, where in services_
    ]


def token_view(identity: Identity, catalog: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "methods": list(identity.methods),
        "user": {
            "id": identity.user_id,
            "name": identity.user_name,
            "domain": DOMAIN,
            "password_expires_at": None,
        },
        "audit_ids": [identity.audit_id],
        "issued_at": stamp(identity.issued_at),
        "expires_at": stamp(identity.expires_at),
    }
    if identity.project_id:
        view["project"] = {
            "id": identity.project_id,
            "name": identity.project_name,
            "domain": DOMAIN,
        }
        view["is_domain"] = False
        view["roles"] = [
            {"id": role_id, "name": name}
            for role_id, name in zip(identity.role_ids, identity.roles, strict=True)
        ]
        if catalog:
            view["catalog"] = _catalog(identity.project_id)
    if identity.app_credential_id:
        view["application_credential"] = {"id": identity.app_credential_id, "restricted": True}
    return view


def _scope(session: Any, data: dict[str, Any], user: User) -> Project | None:
    """The project a login asks for; the user's default project when it names none (an
    unscoped token, as Keystone gives, when that project is gone, disabled or no use)."""
    scope = data.get("scope")
    if scope in (None, "", {}):
        default = session.get(Project, user.default_project_id or "")
        if default is None or not default.enabled:
            return None
        return default if store.roles_on(session, user.id, default.id) else None
    if scope == "unscoped":
        return None
    if not isinstance(scope, dict) or "project" not in scope:
        raise Unauthorized("Cellar scopes tokens to projects: give scope.project (id or name)")
    project = store.find_project(session, scope["project"])
    if project is None or not project.enabled:
        raise BadToken(store.LOGIN_FAILED)
    return project


@blueprint.post(f"{BASE}/auth/tokens")
def log_in() -> ResponseReturnValue:
    data = parse(LogIn)
    identity_ = data.get("identity")
    if not isinstance(identity_, dict) or not isinstance(identity_.get("methods"), list):
        raise InvalidInput(
            'auth.identity.methods must list one of "password", "token", "application_credential"'
        )
    methods = [m for m in identity_["methods"] if m in METHODS]
    if len(methods) != 1 or methods[0] not in identity_:
        raise InvalidInput(f"give exactly one of the methods {', '.join(METHODS)}, with its part")
    method = methods[0]
    settings = services().settings
    shown = None if method == "token" else identity_[method]  # a token's "id" is the token
    try:
        token, who = _log_in(method, identity_[method], data, settings.token_ttl)
    except Unauthorized as exc:
        audit.login(method, shown, "failed", exc.message)
        raise
    g.identity = who
    audit.login(method, shown, "ok")
    response = jsonify({"token": token_view(who, catalog="nocatalog" not in request.args)})
    response.status_code = 201
    response.headers[SUBJECT] = token
    return response


def _log_in(method: str, part: object, data: dict[str, Any], ttl: float) -> tuple[str, Identity]:
    sealer = _sealer()
    with services().db.session() as session:
        if method == "password":
            user_ref = part.get("user") if isinstance(part, dict) else None
            password = user_ref.get("password") if isinstance(user_ref, dict) else None
            user = store.password_login(session, user_ref, password)
            project = _scope(session, data, user)
            return _issue(session, sealer, user, project, ("password",), ttl)
        if method == "token":
            given = part.get("id") if isinstance(part, dict) else None
            if not isinstance(given, str) or not given:
                raise InvalidInput("the token method needs auth.identity.token.id")
            old = sealer.open(given, utcnow())
            store.resolve(session, old)  # still valid: not revoked, its user enabled
            holder = session.get(User, old.user_id)
            if holder is None or old.app_credential_id:
                raise BadToken("a token of an application credential cannot change project")
            project = _scope(session, data, holder)
            return _issue(session, sealer, holder, project, old.methods, ttl, old.expires_at)
        credential_ref = part if isinstance(part, dict) else {}
        credential = store.credential_login(session, credential_ref, credential_ref.get("secret"))
        owner = session.get(User, credential.user_id)
        project = session.get(Project, credential.project_id)
        if owner is None or not owner.enabled or project is None:
            raise BadToken("the application credential's user or project is gone")
        scope = data.get("scope")
        if scope not in (None, {}):
            asked = store.find_project(
                session, scope.get("project") if isinstance(scope, dict) else None
            )
            if asked is None or asked.id != project.id:
                raise BadToken("an application credential logs in to its own project only")
        return _issue(
            session,
            sealer,
            owner,
            project,
            ("application_credential",),
            ttl,
            app_credential=credential,
        )


def _issue(
    session: Any,
    sealer: TokenSealer,
    user: User,
    project: Project | None,
    methods: tuple[str, ...],
    ttl: float,
    expires_at: Any = None,
    app_credential: ApplicationCredential | None = None,
) -> tuple[str, Identity]:
    return store.issue(
        session,
        sealer,
        user,
        project,
        methods,
        ttl,
        app_credential=app_credential,
        expires_at=expires_at,
    )


def _subject() -> tuple[str, Identity]:
    """The token named by ``X-Subject-Token``, and who it is for (404 if not valid)."""
    token = request.headers.get(SUBJECT, "").strip()
    if not token:
        raise InvalidInput(f"name the token in {SUBJECT}")
    try:
        return token, auth.current().validator.validate(token)
    except Unauthorized as exc:
        raise NotFound(f"the token is not valid: {exc.message}") from exc


@blueprint.get(f"{BASE}/auth/tokens")
def validate() -> ResponseReturnValue:
    _token, who = _subject()
    admin_or(who.user_id)
    response = jsonify({"token": token_view(who, catalog="nocatalog" not in request.args)})
    response.headers[SUBJECT] = request.headers[SUBJECT]
    return response


@blueprint.route(f"{BASE}/auth/tokens", methods=["HEAD"])
def check() -> ResponseReturnValue:
    _token, who = _subject()
    admin_or(who.user_id)
    return Response(status=200)


@blueprint.delete(f"{BASE}/auth/tokens")
def revoke() -> ResponseReturnValue:
    _token, who = _subject()
    me = admin_or(who.user_id)
    with services().db.session() as session:
        store.revoke(session, "token", who.audit_id, who.expires_at, by=me.user_id)
        audit.record(
            session,
            who.project_id or me.project_id,
            "identity.token_revoke",
            "user",
            who.user_id,
            {"audit_id": who.audit_id},
        )
    return Response(status=204)


@blueprint.get(f"{BASE}/auth/projects")
def my_projects() -> ResponseReturnValue:
    """The projects the caller's user has a role on (for ``--my-projects``)."""
    me = caller()
    with services().db.session() as session:
        projects = store.projects_of(session, me.user_id)
        views = [project_view(p) for p in projects]
    return jsonify({"projects": views, "links": {"self": url("/auth/projects")}})


@blueprint.get(f"{BASE}/auth/catalog")
def catalog() -> ResponseReturnValue:
    me = caller()
    if not me.project_id:
        raise Unauthorized("an unscoped token has no catalog")
    return jsonify({"catalog": _catalog(me.project_id), "links": {"self": url("/auth/catalog")}})
