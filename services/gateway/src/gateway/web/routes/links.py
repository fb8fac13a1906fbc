"""The import page (`/import/{app}/{token}`): opens a VPN app's own import link for the
subscription link, for places that take only http(s) links (the bot's buttons)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from contracts.public.links import APP_IDS, APPS, TOKEN_RE, import_url, link_url
from gateway.web.rendering import WebRoute, render
from runtime.errors import NotFound

router = APIRouter(route_class=WebRoute)


@router.get("/import/{app_id}/{token}")
async def open_in_app(request: Request, app_id: str, token: str):
    """A page that sends the browser on to the app (and a button, should it not go by
    itself). It builds the app's link from the token's form only: whether the token works is
    the link's own business (`GET /api/v1/sub/{token}`)."""
    if app_id not in APP_IDS or not TOKEN_RE.match(token):
        raise NotFound("No such page")
    st = request.app.state.settings
    url = link_url(st.app_base_url, token)
    target = import_url(app_id, url, st.sub_profile_title)
    name = next(a[1] for a in APPS if a[0] == app_id)
    return render(request, "public/import.html", headers={"Refresh": f"0; url={target}"},
                  app_name=name, target=target, url=url)
