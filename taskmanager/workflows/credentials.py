"""The tasks of debug credentials: make a login, and drop one that was revoked.

Both are short tasks the API waits for; the work is ``taskmanager.credential_logins``'s,
which beat's sweep shares for the credentials whose time is up.
"""

from __future__ import annotations

from cellar.credentials import State, stamp
from cellar.errors import AgentError
from cellar.models import Credential, utcnow
from cellar.workflows import WorkflowName
from taskmanager import credential_logins
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow


def _credential(ctx: StepContext) -> Credential:
    credential = ctx.session.get(Credential, ctx.task.params["credential_id"])
    if credential is None:
        raise StepFailed(f"credential {ctx.task.params['credential_id']} does not exist")
    return credential


def issue_credential(ctx: StepContext) -> Decision:
    credential = _credential(ctx)
    if credential.state != State.ISSUING:  # revoked, or failed by the sweep, meanwhile
        return NEXT
    password = ctx.secret().get("password", "")
    try:
        credential_logins.make_login(ctx.agent, credential, password, utcnow())
    except AgentError as exc:
        if exc.retryable:
            raise
        credential.state, credential.fault = State.FAILED, exc.message[:512]
        credential_logins.record(ctx.session, credential, "credential.failed", "500")
        ctx.forget_secret()
        ctx.session.commit()
        raise StepFailed(exc.message) from exc
    credential_logins.record(ctx.session, credential, "credential.issued", "201",
                             expires_at=stamp(credential.expires_at))  # fmt: skip
    ctx.forget_secret()
    return NEXT


def end_credential(ctx: StepContext) -> Decision:
    credential = _credential(ctx)
    if credential.state not in (State.ACTIVE, State.ISSUING):
        return NEXT
    if not credential_logins.end(ctx.session, ctx.services, credential, utcnow()):
        raise AgentError("the instance's agent did not answer", retryable=True)
    return NEXT


ISSUE_CREDENTIAL = Workflow(
    WorkflowName.ISSUE_CREDENTIAL,
    (Step("issue_credential", issue_credential, 60, "making the login"),),
)
END_CREDENTIAL = Workflow(
    WorkflowName.END_CREDENTIAL,
    (Step("end_credential", end_credential, 60, "dropping the login and its sessions"),),
)
