"""The gateway and the services agree on every public shape, because there is one of each.

For every call a gateway client makes, the service route it reaches must answer with the very
model the client declares (`contracts.public`): the service's FastAPI validates its own answers
against that model, and the gateway's `/api/v1` documents the same class. The test fails as soon
as a service answers with another model, a client calls a path no service serves, or a status
enum is spelled out a second time in the code.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import get_args

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from contracts.public import billing as public_billing
from contracts.public import broadcasts as public_broadcasts
from contracts.public import moves as public_moves
from contracts.public import servers as public_servers
from contracts.public import subscriptions as public_subscriptions
from contracts.public import tickets as public_tickets
from gateway.clients import ANONYMOUS, Clients
from gateway.clients.provisioner import SUBSCRIPTION_ACTIONS
from runtime.periods import Periods

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("billing", "tickets", "provisioner", "telegram")


def _service_routes(name: str) -> list[tuple[str, re.Pattern, type | None]]:
    app_module = importlib.import_module(f"{name}.app")
    settings = importlib.import_module(f"{name}.config").Settings()
    app = app_module.create_api(settings)
    out = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.route if hasattr(ctx, "route") else ctx
        if not isinstance(route, APIRoute):
            continue
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", route.path_format) + "$")
        for method in route.methods:
            out.append((method, pattern, route.response_model))
    return out


def _dummy(param: inspect.Parameter):
    annotation = str(param.annotation)
    if param.name == "who":
        return ANONYMOUS
    if "bytes" in annotation:
        return b"{}"
    if "dict" in annotation:
        return {}
    if annotation == "Periods":
        return Periods.between(None, None)
    for module in (public_billing, public_broadcasts, public_tickets, public_subscriptions,
                   public_servers, public_moves):
        model = getattr(module, annotation.split(" ")[0].split("|")[0].strip(), None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_construct()
    return "x1"


class _Answer:
    """An empty 200, for the client methods that read a raw answer themselves."""

    status_code = 200
    content = b"{}"
    headers: dict[str, str] = {}

    def json(self) -> dict:
        return {}


def _client_calls() -> list[tuple[str, str, str, type | None]]:
    """Every (service, method, path, declared model) the gateway's clients send."""
    clients = Clients.connect({s: "http://127.0.0.1:9" for s in SERVICES}, "k", 1.0)
    seen = []
    for client in clients.all():
        async def record(model, method, path, who, _client=client, **kwargs):
            seen.append((_client.name, method, path, model))

        async def raw(method, path, who, _client=client, **kwargs):
            seen.append((_client.name, method, path, None))  # an answer with no public model
            return _Answer()

        client.call = record  # what each method asks for; nothing is sent
        client.send = raw
        for name, fn in inspect.getmembers(client, inspect.iscoroutinefunction):
            if name.startswith("_") or name in {"send", "call", "call_json", "ready"}:
                continue
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.default is inspect.Parameter.empty]
            variants = ([{"action": a} for a in SUBSCRIPTION_ACTIONS]
                        if "action" in inspect.signature(fn).parameters else [{}])
            for extra in variants:
                args = {p.name: extra.get(p.name, _dummy(p)) for p in params}
                coro = fn(**args)
                try:
                    coro.send(None)
                except StopIteration:
                    pass
                finally:
                    coro.close()
    return seen


@pytest.fixture(scope="module")
def routes():
    return {name: _service_routes(name) for name in SERVICES}


def test_every_client_call_reaches_a_route_answering_the_declared_model(routes):
    calls = _client_calls()
    assert len(calls) >= 30  # every client method was exercised
    for service, method, path, model in calls:
        matches = [rm for m, pattern, rm in routes[service]
                   if m == method and pattern.match(path)]
        assert matches, f"{service} serves no {method} {path}"
        assert model is None or matches[0] is model, (
            f"{service} {method} {path} answers {matches[0]}, the gateway expects {model}")


def test_the_gateway_documents_the_services_own_models():
    from gateway.app import create_api
    from gateway.config import Settings

    api = create_api(Settings())
    declared = set()
    for ctx in iter_route_contexts(api.routes):
        route = ctx.route if hasattr(ctx, "route") else ctx
        if isinstance(route, APIRoute) and route.response_model is not None:
            declared.add(route.response_model)
    shared = {m for module in (public_billing, public_tickets, public_subscriptions)
              for m in vars(module).values()
              if isinstance(m, type) and issubclass(m, BaseModel)
              and m.__module__ == module.__name__}
    used = declared & shared
    assert public_billing.InvoiceEnvelope in used and public_tickets.TicketEnvelope in used
    for model in declared - shared:
        assert model.__module__ == "gateway.schemas" or model.__module__.startswith(
            "contracts.public."), (
            f"{model.__module__}.{model.__name__} is a public shape declared outside "
            "contracts.public / gateway.schemas")


STATUS_ENUMS = {
    "InvoiceStatus": get_args(public_billing.InvoiceStatus),
    "PaymentStatus": get_args(public_billing.PaymentStatus),
    "TicketStatus": get_args(public_tickets.TicketStatus),
    "SubscriptionStatus": get_args(public_subscriptions.SubscriptionStatus),
}


def test_no_status_enum_is_defined_twice():
    sources = [p for p in ROOT.glob("services/*/src/**/*.py") if "migrations" not in p.parts]
    sources += list(ROOT.glob("libs/contracts/src/**/*.py"))
    for name, values in STATUS_ENUMS.items():
        literal = re.compile(r"Literal\[\s*" + r"\s*,\s*".join(f'"{v}"' for v in values[:3]))
        tuple_ = re.compile(r"\(\s*" + r"\s*,\s*".join(f'"{v}"' for v in values[:3]))
        where = [str(p.relative_to(ROOT)) for p in sources
                 if literal.search(p.read_text()) or tuple_.search(p.read_text())]
        assert len(where) == 1, f"{name} is spelled out in {where}"
