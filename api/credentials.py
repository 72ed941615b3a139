"""/instances/{id}/credentials: time-limited logins for debugging and production support.

``POST`` asks for one with a reason, an access, databases and a time to live, and answers
with the login's name and password, the only time the password is shown. When the
project's settings want write access approved, the answer is 202 PENDING_APPROVAL and the
login is made once another member approves (``POST .../{id}/action {"approve": {}}``); the
one who asked can never approve it. ``DELETE`` revokes a login early. Making and dropping
logins are short tasks the request waits for; beat drops each login when its time is up
(``taskmanager.credential_logins``). Every step is in the audit trail with its reason.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body, replicas, task_wait
from api.databases import instance_version
from api.instance_checks import busy_check, load_instance
from api.schemas import parse
from api.schemas.credentials import BASE, CreateDebugLogin, DebugLoginAction
from api.state import services
from cellar import credentials, names
from cellar.credentials import State
from cellar.errors import Busy, Conflict, Forbidden, InvalidInput, NotFound
from cellar.identity.store import Identity
from cellar.models import Credential, Instance, utcnow
from cellar.status import TaskState
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

blueprint = Blueprint("credentials", __name__)


def _databases(instance: Instance, given: object) -> list[str]:
    named = instance_version(instance).has_databases
    if given in (None, []):
        if named:
            raise InvalidInput("databases is required: name the databases the login may reach")
        return []
    if not named:
        raise InvalidInput(f"{instance.datastore} has no named databases: leave databases out")
    if not isinstance(given, list) or len(given) > credentials.MAX_DATABASES:
        raise InvalidInput(f"databases must be a list of 1 to {credentials.MAX_DATABASES} names")
    return list(dict.fromkeys(names.check_identifier("database", d) for d in given))


FIELDS = ("ttl_seconds", "access", "databases", "reason")


def _request(instance: Instance, data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}: a credential takes "
                           f"{', '.join(FIELDS)} (its password is always generated)")  # fmt: skip
    access = data.get("access", "read")
    if access not in credentials.ACCESS:
        raise InvalidInput(f"access must be one of {', '.join(credentials.ACCESS)}, got {access!r}")
    ttl = data.get("ttl_seconds")
    return {
        "access": access,
        "ttl_seconds": credentials.DEFAULT_TTL if ttl is None else body.integer(
            ttl, "ttl_seconds", credentials.MIN_TTL, credentials.MAX_TTL),
        "databases": _databases(instance, data.get("databases")),
        "reason": body.text(data, "reason", max_len=credentials.MAX_REASON),
    }  # fmt: skip


def _issue(session: Session, credential: Credential, password: str) -> str:
    task = start_task(
        session, services().secrets, project_id=credential.project_id,
        workflow=WorkflowName.ISSUE_CREDENTIAL, request_id=g.request_id,
        instance_id=credential.instance_id, params={"credential_id": credential.id},
        secret={"password": password},
    )  # fmt: skip
    credential.state = State.ISSUING
    return task.id


def _answer(credential_id: str, task_id: str | None, secret: dict[str, str],
            done: int = 200) -> ResponseReturnValue:  # fmt: skip
    """The credential with ``secret``: ``done`` once its task ended, 202 while it runs
    (follow it with ``GET``) or while the credential waits for approval."""
    finished = None
    if task_id is not None:
        services().enqueue(task_id, 0.0, g.request_id)
        finished = task_wait.wait(task_id)
    with services().db.session() as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        if finished is not None and finished.state != TaskState.COMPLETED.value:
            raise task_wait.failure(finished, f"the change of credential {credential_id}")
        waiting = finished is None and task_id is not None
        pending = credential.state == State.PENDING_APPROVAL
        status = 202 if waiting or pending else done
        return jsonify({"credential": {**credentials.view(credential), **secret}}), status


@blueprint.post(BASE)
def create(project_id: str, instance_id: str) -> ResponseReturnValue:
    data = parse(CreateDebugLogin)
    who: Identity = g.identity
    password = credentials.new_password()
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        replicas.refuse_on_replica(instance)
        busy_check(session, instance)
        asked = _request(instance, data)
        credential = Credential(
            project_id=project_id, instance_id=instance.id, user_name=credentials.login_name(),
            state=State.PENDING_APPROVAL, requested_by=who.user_name,
            requested_by_id=who.user_id, **asked,
        )  # fmt: skip
        session.add(credential)
        session.flush()
        task_id = None
        if credentials.needs_approval(session, project_id, asked["access"]):
            credential.sealed = svc.secrets.seal({"password": password})
            action = "credential.requested"
        else:
            task_id = _issue(session, credential, password)
            action = "credential.issue"
        audit.record(session, project_id, action, "instance", instance.id,
                     credentials.audit_details(credential, task_id=task_id))  # fmt: skip
        credential_id = credential.id
    return _answer(credential_id, task_id, {"password": password}, 201)


def _load(session: Session, project_id: str, instance_id: str, credential_id: str) -> Credential:
    load_instance(session, project_id, instance_id)
    credential = session.get(Credential, credential_id)
    if credential is None or credential.instance_id != instance_id:
        raise NotFound(f"credential {credential_id} does not exist on instance {instance_id}")
    return credential


@blueprint.get(BASE)
def index(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        load_instance(session, project_id, instance_id)
        rows = session.scalars(
            select(Credential)
            .where(Credential.instance_id == instance_id)
            .order_by(Credential.created.desc(), Credential.id)
        )
        return jsonify({"credentials": [credentials.view(c) for c in rows]})


@blueprint.get(f"{BASE}/<credential_id>")
def show(project_id: str, instance_id: str, credential_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        credential = _load(session, project_id, instance_id, credential_id)
        return jsonify({"credential": credentials.view(credential)})


@blueprint.delete(f"{BASE}/<credential_id>")
def revoke(project_id: str, instance_id: str, credential_id: str) -> ResponseReturnValue:
    who: Identity = g.identity
    svc = services()
    with svc.db.session() as session:
        credential = _load(session, project_id, instance_id, credential_id)
        if credential.state in credentials.ENDED:
            raise Conflict(f"credential {credential_id} already ended ({credential.state})")
        details = credentials.audit_details(credential, revoked_by=who.user_name)
        if credential.state == State.PENDING_APPROVAL:  # no login yet: nothing to drop
            credential.state, credential.sealed = State.REVOKED, None
            credential.ended_at, credential.ended_by = utcnow(), who.user_name
            audit.record(session, project_id, "credential.revoke", "instance", instance_id,
                         details)  # fmt: skip
            return jsonify({"credential": credentials.view(credential)})
        credential.ended_by = who.user_name
        task = start_task(
            session, svc.secrets, project_id=project_id, workflow=WorkflowName.END_CREDENTIAL,
            request_id=g.request_id, instance_id=instance_id,
            params={"credential_id": credential.id},
        )  # fmt: skip
        audit.record(session, project_id, "credential.revoke", "instance", instance_id,
                     {**details, "task_id": task.id})  # fmt: skip
        task_id = task.id
    return _answer(credential_id, task_id, {})


@blueprint.post(f"{BASE}/<credential_id>/action")
def act(project_id: str, instance_id: str, credential_id: str) -> ResponseReturnValue:
    data = parse(DebugLoginAction)
    if set(data) not in ({"approve"}, {"reject"}):
        raise InvalidInput('the body must be {"approve": {}} or {"reject": {}}')
    who: Identity = g.identity
    svc = services()
    with svc.db.session() as session:
        credential = _load(session, project_id, instance_id, credential_id)
        if credential.state != State.PENDING_APPROVAL:
            raise Conflict(f"credential {credential_id} is {credential.state}, not waiting for "
                           "approval")  # fmt: skip
        if credential.requested_by_id == who.user_id:
            raise Forbidden("the member who asked for a credential cannot approve or reject it; "
                            "another member of the project must")  # fmt: skip
        task_id = None
        if "reject" in data:
            credential.state, credential.sealed = State.REJECTED, None
            credential.ended_at, credential.ended_by = utcnow(), who.user_name
            action = "credential.reject"
        else:
            instance = load_instance(session, project_id, instance_id)
            busy_check(session, instance)
            if credential.sealed is None:
                raise Busy(f"credential {credential_id} lost its password; ask for a new one")
            password = svc.secrets.open(credential.sealed)["password"]
            credential.approved_by = who.user_name
            task_id = _issue(session, credential, password)
            action = "credential.approve"
        audit.record(session, project_id, action, "instance", instance_id,
                     credentials.audit_details(credential, approved_by=who.user_name,
                                               task_id=task_id))  # fmt: skip
    return _answer(credential_id, task_id, {})
