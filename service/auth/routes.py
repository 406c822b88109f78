"""Browser sign-in: a bearer API key or JWT exchanged for an HttpOnly session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from pydantic import AwareDatetime, BaseModel

from service.auth import sessions
from service.auth.caller import CallerDep
from service.core.problems import Unauthorized
from service.web.deps import SessionDep, SettingsDep
from service.web.openapi import PROBLEM
from service.web.responses import model_response

router = APIRouter(prefix="/v1/auth", tags=["browser sessions"], responses={401: PROBLEM, 403: PROBLEM})


class SessionOut(BaseModel):
    tenant: str
    expires_at: AwareDatetime


@router.post("/session", response_model=SessionOut)
def sign_in(request: Request, caller: CallerDep) -> Response:
    """Exchange a bearer API key or JWT for an HttpOnly session cookie (for the page and Uppy)."""
    principal, settings = caller.principal, caller.settings
    if principal.method == "session":
        raise Unauthorized("Sign in with 'Authorization: Bearer <API key or token>'.")
    with caller.session() as session:
        token, expires = sessions.start_session(session=session, settings=settings, principal=principal)
    response = model_response(SessionOut(tenant=principal.tenant, expires_at=expires))
    sessions.set_cookie(response, request=request, settings=settings, token=token, expires=expires)
    return response


@router.get("/session", response_model=SessionOut)
def current_session(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Who the session cookie belongs to, and until when."""
    found = sessions.authenticate_session(session, request.cookies.get(settings.session_cookie_name, ""))
    if found is None:
        raise Unauthorized("Not signed in.")
    principal, expires = found
    return model_response(SessionOut(tenant=principal.tenant, expires_at=expires))


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def sign_out(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """End the session: the server forgets it, so the cookie stops working everywhere at once."""
    token = request.cookies.get(settings.session_cookie_name)
    if token:
        sessions.require_allowed_origin(request, settings)
        sessions.end_session(session, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    sessions.clear_cookie(response, request=request, settings=settings)
    return response
