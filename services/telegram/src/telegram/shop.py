"""The shop inside the bot: the button menu, buying, access and the customer's notices.

Screens are one message edited in place: a button press (`callback_query`) is answered every
time and turns the pressed message into the next screen. What the customer puts together
(plan, payment method, promo code) is kept in `bot_users.state`; the invoice is created with an
Idempotency-Key made of the pressed message and that choice, so a double tap makes one invoice,
and the message becomes the invoice (`shop_invoices`), whose status line billing's events
edit. Billing and the provisioner are called for the customer through their internal APIs
(`telegram.shopapi`).

Every Bot API call is an `outgoing` row (`method`, `params`) delivered by the notify job after
the update's transaction commits, exactly once; the rows of one update are chained
(`params.after`) so they reach Telegram in order. QR codes are made at delivery from the text
they encode (`params.qr`), with `segno`.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson
import segno
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.logging import get_logger
from telegram import csat
from telegram.botapi import BotApi, TelegramError
from telegram.config import Settings
from telegram.models import BotUser, Outgoing, SubscriptionView
from telegram.repository import ShopRepository, TelegramRepository
from telegram.shopapi import ShopApi, ShopApiError
from telegram.texts import LANGUAGES, TEXTS, bot_commands, language_of, promo_reason, raw, t

log = get_logger(__name__)

NOT_MODIFIED = "message is not modified"
BLOCKED = "bot was blocked by the user"
PROMO_RE = re.compile(r"^[A-Za-z0-9_-]{3,32}$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TOP_UPS = (5, 10, 25)
STARS = "stars"
SHOP_COMMANDS = {"/menu": "m", "/buy": "b", "/access": "a", "/balance": "bal",
                 "/language": "lang"}
# Import buttons copy the app's deep link (Telegram opens only http(s) and tg:// links from a
# button); the templates are the apps' (adapters docs, "VPN client deep links"). Used for a
# bare access key; the stable subscription link's buttons open our import page instead.
IMPORT_APPS = (("Happ", "happ://add/{url}"), ("v2rayNG", "v2rayng://install-config?url={q}"),
               ("Hiddify", "hiddify://import/{url}"), ("Streisand", "streisand://import/{url}"))
# The apps the access message has a button for (the phones' and Clash Meta; desktops' are on
# the web access page).
LINK_APPS = ("happ", "v2rayng", "hiddify", "streisand", "shadowrocket", "clash-meta")


def qr_png(data: str) -> bytes:
    """The QR code of `data` as a PNG (the same bytes for the same data)."""
    buf = io.BytesIO()
    segno.make(data, error="m").save(buf, kind="png", scale=8, border=2)
    return buf.getvalue()


def button(text: str, data: str) -> dict[str, str]:
    return {"text": text, "callback_data": data}


def keyboard(*rows: list[dict]) -> dict:
    return {"inline_keyboard": [r for r in rows if r]}


def _money(value: Any) -> str:
    return f"{Decimal(str(value)):.2f}"


def invoice_key(chat_id: int, message_id: int, choice: dict) -> str:
    """The Idempotency-Key of "Create invoice" pressed on this message with this choice."""
    digest = hashlib.sha256(orjson.dumps(choice, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"tg-{chat_id}-{message_id}-{digest[:32]}"


class Calls:
    """The Bot API calls one update makes, as chained outgoing rows (delivered in order)."""

    def __init__(self, repo: TelegramRepository, event_id: str, chat_id: int):
        self.repo = repo
        self.event_id = event_id
        self.chat_id = chat_id
        self.ids: list[int] = []

    async def add(self, method: str, **params: Any) -> None:
        if self.ids:
            params["after"] = self.ids[-1]
        oid = await self.repo.add_outgoing(
            event_id=self.event_id, ticket_id=None, chat_id=self.chat_id,
            kind=f"shop:{len(self.ids)}:{method}", seq=0, method=method,
            params={k: v for k, v in params.items() if v is not None})
        if oid is not None:
            self.ids.append(oid)

    async def edit(self, message_id: int, text: str, markup: dict | None = None) -> None:
        await self.add("editMessageText", chat_id=self.chat_id, message_id=message_id,
                       text=text, parse_mode="HTML", reply_markup=markup,
                       link_preview_options={"is_disabled": True})

    async def send(self, text: str, markup: dict | None = None) -> None:
        await self.add("sendMessage", chat_id=self.chat_id, text=text, parse_mode="HTML",
                       reply_markup=markup, link_preview_options={"is_disabled": True})

    async def photo(self, qr: str, caption: str | None = None, markup: dict | None = None
                    ) -> None:
        await self.add("sendPhoto", chat_id=self.chat_id, qr=qr, caption=caption,
                       reply_markup=markup)

    async def answer(self, query_id: str, text: str | None = None, alert: bool = False) -> None:
        await self.add("answerCallbackQuery", callback_query_id=query_id, text=text,
                       show_alert=alert or None)


async def perform(bot: BotApi, row: Outgoing) -> dict | None:
    """Make the row's Bot API call; the message it made or edited, if any. An edit that changes
    nothing ("message is not modified": a redelivery, or the screen already shown) is done."""
    params = {k: v for k, v in (row.params or {}).items() if k != "after"}
    try:
        if row.method == "sendPhoto":
            data = params.pop("qr")
            result = await bot.upload("sendPhoto", {"photo": ("qr.png", qr_png(data),
                                                              "image/png")}, **params)
        else:
            result = await bot.call(row.method or "sendMessage", **params)
    except TelegramError as exc:
        if exc.status == 400 and NOT_MODIFIED in exc.description:
            return None
        raise
    return result if isinstance(result, dict) else None


class Shop:
    """The bot's shop screens for customers whose Telegram is linked to an account."""

    def __init__(self, settings: Settings, api: ShopApi | None = None):
        self.settings = settings
        self.api = api or ShopApi(settings.billing_url, settings.provisioner_url,
                                  settings.internal_signing_key, settings.shop_api_timeout,
                                  settings.tickets_url)

    # -------------------------------------------------------------- entry points

    async def on_callback(self, s: AsyncSession, update_id: int, query: dict
                          ) -> tuple[str, list[int]]:
        sender, message = query.get("from") or {}, query.get("message") or {}
        chat_id = (message.get("chat") or {}).get("id")
        message_id, data, qid = message.get("message_id"), query.get("data"), query.get("id")
        if not (isinstance(sender.get("id"), int) and isinstance(chat_id, int)
                and isinstance(message_id, int) and isinstance(qid, str)):
            return "ignored:bad_callback", []
        repo = TelegramRepository(s)
        calls = Calls(repo, f"update-{update_id}", chat_id)
        user = await ShopRepository(s).bot_user(sender["id"], chat_id,
                                                sender.get("language_code"))
        lang = language_of(user.language, user.language_code)
        link = await repo.link_for_telegram(sender["id"])
        if link is None:
            await calls.answer(qid, _plain(t(lang, "unlinked")), alert=True)
            return "shop:unlinked", calls.ids
        if await repo.is_blocked(link.user_id):
            await calls.answer(qid, "⛔", alert=True)
            return "shop:blocked", calls.ids
        screen = Screen(self, s, calls, user, link.user_id, lang, qid, message_id)
        outcome = await screen.dispatch(data if isinstance(data, str) else "")
        return f"shop:{outcome}", calls.ids

    async def on_text(self, s: AsyncSession, update_id: int, message: dict, text: str,
                      user_id: str) -> tuple[str, list[int]] | None:
        """A linked customer's text in the private chat: a shop command, or the promo code
        the open screen asked for; None when it is neither (it goes to support)."""
        sender, chat_id = message.get("from") or {}, message["chat"]["id"]
        command = text.split("@", 1)[0].split(" ", 1)[0]
        user = await ShopRepository(s).bot_user(sender["id"], chat_id,
                                                sender.get("language_code"))
        state = user.state or {}
        if command not in SHOP_COMMANDS and not state.get("awaiting_promo"):
            return None
        repo = TelegramRepository(s)
        calls = Calls(repo, f"update-{update_id}", chat_id)
        lang = language_of(user.language, user.language_code)
        screen = Screen(self, s, calls, user, user_id, lang, None, None)
        if command in SHOP_COMMANDS:
            user.state = None
            await screen.dispatch(SHOP_COMMANDS[command])
            return f"shop:{command[1:]}", calls.ids
        return await screen.promo_typed(text.strip(), message["message_id"]), calls.ids


class Screen:
    """One update's work on the shop's screens for one customer."""

    def __init__(self, shop: Shop, s: AsyncSession, calls: Calls, user: BotUser, user_id: str,
                 lang: str, query_id: str | None, message_id: int | None):
        self.shop, self.api, self.s, self.calls = shop, shop.api, s, calls
        self.user, self.user_id, self.lang = user, user_id, lang
        self.query_id, self.message_id = query_id, message_id
        self.answered = False

    def t(self, key: str, **values: Any) -> str:
        return t(self.lang, key, **values)

    async def answer(self, text: str | None = None, alert: bool = False) -> None:
        if self.query_id is not None and not self.answered:
            self.answered = True
            await self.calls.answer(self.query_id, _plain(text) if text else None, alert)

    async def show(self, text: str, markup: dict | None = None) -> None:
        """The screen: the pressed message edited (a command's screen is a new message)."""
        await self.answer()
        if self.message_id is not None:
            await self.calls.edit(self.message_id, text, markup)
        else:
            await self.calls.send(text, markup)

    def back(self, to: str = "m") -> list[dict]:
        return [button(self.t("btn_back" if to != "m" else "btn_menu"), to)]

    async def dispatch(self, data: str) -> str:
        head, _, arg = data.partition(":")
        handlers = {"m": self.menu, "b": self.plans, "p": self.plan, "o": self.option,
                    "promo": self.ask_promo, "c": self.create, "r": self.refresh,
                    "a": self.access, "s": self.subscriptions, "t": self.trial,
                    "bal": self.balance, "tu": self.top_up, "ref": self.invite,
                    "lang": self.languages, "l": self.set_language, "sup": self.support,
                    csat.PREFIX: lambda arg: csat.rate(self, arg)}
        handler = handlers.get(head)
        if handler is None:
            await self.answer(self.t("stale_button"), alert=True)
            return "unknown_button"
        try:
            outcome = await handler(arg)
        except ShopApiError as exc:
            # nothing is stored; the customer is told, and may press again
            log.warning("shop_api_refused", screen=head, code=exc.code, status=exc.status)
            text = self.t("unavailable") if exc.unavailable else html.escape(
                exc.message or exc.code, quote=False)
            await self.answer(text, alert=True)
            if self.query_id is None:
                await self.calls.send(text)
            return "unavailable" if exc.unavailable else "refused"
        await self.answer()  # every press is answered, whatever the screen did
        return outcome

    # -------------------------------------------------------------- menu

    async def menu(self, _: str = "") -> str:
        view = await self.s.get(SubscriptionView, self.user_id)
        if view is None:
            status = self.t("status_none")
        elif view.status == "ACTIVE" and view.expires_at:
            status = self.t("status_active", until=f"{view.expires_at:%Y-%m-%d}")
        else:
            status = self.t("status_other", status=view.status.lower(),
                            until=f"{view.expires_at:%Y-%m-%d}" if view.expires_at else "—")
        trial = [button(self.t("btn_trial"), "t")] if view is None else []
        await self.show(self.t("menu", status=status), keyboard(
            [button(self.t("btn_buy"), "b")],
            [button(self.t("btn_subscription"), "s"), button(self.t("btn_access"), "a")],
            trial,
            [button(self.t("btn_balance"), "bal"), button(self.t("btn_invite"), "ref")],
            [button(self.t("btn_language"), "lang"), button(self.t("btn_support"), "sup")]))
        return "menu"

    async def languages(self, _: str) -> str:
        await self.show(self.t("language"), keyboard(
            [button("🇷🇺 Русский", "l:ru"), button("🇬🇧 English", "l:en")], self.back()))
        return "language"

    async def set_language(self, lang: str) -> str:
        if lang not in LANGUAGES:
            await self.answer(self.t("stale_button"), alert=True)
            return "unknown_button"
        self.user.language = self.lang = lang
        await self.answer(self.t("language_set"))
        await self.menu()
        return "language_set"

    async def support(self, _: str) -> str:
        await self.show(self.t("support"), keyboard(self.back()))
        return "support"

    # -------------------------------------------------------------- buying

    async def plans(self, _: str) -> str:
        plans = await self.api.plans(self.user_id)
        lines = [self.t("plan_line", name=p["name"], price=_money(p["price_usd"]),
                        days=p["duration_days"], devices=p["max_devices"]) for p in plans]
        text = self.t("plans") + "\n\n" + ("\n".join(lines) or self.t("no_plans"))
        await self.show(text, keyboard(
            *[[button(f"{p['name']} · ${_money(p['price_usd'])}", f"p:{p['id']}")]
              for p in plans if ID_RE.match(p["id"])], self.back()))
        return "plans"

    async def plan(self, plan_id: str) -> str:
        plan = next((p for p in await self.api.plans(self.user_id) if p["id"] == plan_id), None)
        if plan is None:
            await self.answer(self.t("stale_button"), alert=True)
            await self.plans("")
            return "stale_plan"
        self.user.state = {"msg": self.message_id, "kind": "plan", "plan_id": plan_id,
                           "title": plan["name"], "price": _money(plan["price_usd"])}
        return await self._methods()

    async def top_up(self, amount: str) -> str:
        if not amount.isdigit() or int(amount) not in TOP_UPS:
            await self.answer(self.t("stale_button"), alert=True)
            return "unknown_button"
        self.user.state = {"msg": self.message_id, "kind": "topup", "amount": amount,
                           "title": self.t("topup_plan", amount=amount),
                           "price": _money(amount)}
        return await self._methods()

    async def _methods(self) -> str:
        state = dict(self.user.state or {})
        options = await self.api.options(self.user_id)
        state["options"] = [{k: o[k] for k in ("provider", "asset", "network", "label")}
                            for o in options]
        rows = [[button(self.t("method_stars") if o["provider"] == STARS else o["label"],
                        f"o:{i}")] for i, o in enumerate(state["options"])]
        if state["kind"] == "plan" and options:
            balance = (await self.api.balance(self.user_id))["balance_usd"]
            rows.append([button(self.t("method_balance", balance=_money(balance)), "o:bal")])
        self.user.state = state
        await self.show(self.t("methods", plan=state["title"], price=state["price"]),
                        keyboard(*rows, self.back("b" if state["kind"] == "plan" else "bal")))
        return "methods"

    def _state(self) -> dict | None:
        """The purchase being put together on the pressed message (None: another message's,
        or none: the button is out of date)."""
        state = self.user.state or {}
        if not state.get("kind") or (self.message_id is not None
                                     and state.get("msg") != self.message_id):
            return None
        return state

    async def option(self, which: str) -> str:
        state = self._state()
        options = (state or {}).get("options") or []
        if state is None or not (which == "bal" and state["kind"] == "plan" and options or (
                which.isdigit() and int(which) < len(options))):
            await self.answer(self.t("stale_button"), alert=True)
            return "stale_button"
        state = dict(state)
        if which == "bal":
            state["option"] = {**options[0], "balance": True}
        else:
            state["option"] = options[int(which)]
        state.pop("promo", None)
        state.pop("promo_line", None)
        state["awaiting_promo"] = False
        self.user.state = state
        await self._checkout(state)
        return "option"

    def _method_label(self, option: dict) -> str:
        if option.get("balance"):
            return self.t("method_balance", balance="…").split(" (")[0]
        return self.t("method_stars") if option["provider"] == STARS else option["label"]

    async def _checkout(self, state: dict, note: str | None = None) -> None:
        promo = raw(state.get("promo_line") or self.t("promo_none"))
        text = self.t("promo_ask", plan=state["title"], price=state["price"],
                      method=self._method_label(state["option"]), promo=promo)
        if note:
            text = f"{note}\n\n{text}"
        rows = [[button(self.t("btn_create"), "c")]]
        if state["kind"] == "plan":
            rows.insert(0, [button(self.t("btn_promo"), "promo")])
        markup = keyboard(*rows, self.back("b" if state["kind"] == "plan" else "bal"))
        if self.message_id is not None:
            await self.show(text, markup)
        else:  # a typed promo code: the purchase's own message is edited
            await self.calls.edit(state["msg"], text, markup)

    async def ask_promo(self, _: str) -> str:
        state = self._state()
        if state is None or "option" not in state or state["kind"] != "plan":
            await self.answer(self.t("stale_button"), alert=True)
            return "stale_button"
        self.user.state = {**state, "awaiting_promo": True}
        await self.answer(self.t("promo_type"))
        await self.calls.edit(self.message_id, self.t("promo_type"),
                              keyboard([button(self.t("btn_create"), "c")], self.back("b")))
        return "promo_asked"

    async def promo_typed(self, code: str, typed_message_id: int) -> str:
        state = dict(self.user.state or {})
        state["awaiting_promo"] = False
        self.user.state = state
        # The typed code is removed so the chat keeps the one screen.
        await self.calls.add("deleteMessage", chat_id=self.calls.chat_id,
                             message_id=typed_message_id)
        if not PROMO_RE.match(code):
            await self._checkout(state, self.t("promo_refused", code=code[:32],
                                               reason=promo_reason(self.lang, "unknown")))
            return "shop:promo_refused"
        try:
            preview = await self.api.promo(self.user_id, code, state["plan_id"])
        except ShopApiError as exc:
            if exc.unavailable:
                await self.calls.send(self.t("unavailable"))
                return "shop:unavailable"
            preview = {"valid": False, "reason": "unknown"}
        if not preview.get("valid"):
            await self._checkout(state, self.t("promo_refused", code=code,
                                               reason=promo_reason(self.lang,
                                                                   preview.get("reason"))))
            return "shop:promo_refused"
        days = self.t("promo_days", days=preview["bonus_days"]) if preview.get(
            "bonus_days") else ""
        state = {**state, "promo": preview["code"], "promo_line": self.t(
            "promo_applied", code=preview["code"], discount=_money(preview["discount_usd"]),
            days=raw(days), total=_money(preview["price_usd"]))}
        self.user.state = state  # a new object: the JSON column sees only assignments
        await self._checkout(state)
        return "shop:promo_applied"

    async def create(self, _: str) -> str:
        state = self._state()
        if state is None or "option" not in state:
            await self.answer(self.t("stale_button"), alert=True)
            return "stale_button"
        option = state["option"]
        choice = {"kind": state["kind"], "plan_id": state.get("plan_id"),
                  "amount": state.get("amount"), "promo": state.get("promo"),
                  "provider": option["provider"], "asset": option["asset"],
                  "network": option["network"], "balance": bool(option.get("balance"))}
        key = invoice_key(self.calls.chat_id, self.message_id or 0, choice)
        body: dict[str, Any] = {"asset": option["asset"], "network": option["network"],
                                "provider": option["provider"]}
        try:
            if state["kind"] == "topup":
                invoice = await self.api.top_up(self.user_id, key,
                                                {**body, "amount_usd": state["amount"]})
            else:
                body |= {"plan_id": state["plan_id"], "promo_code": state.get("promo"),
                         "pay_with": "balance" if option.get("balance") else None}
                invoice = await self.api.create_invoice(
                    self.user_id, key, {k: v for k, v in body.items() if v is not None})
        except ShopApiError as exc:
            if exc.unavailable:
                raise
            return await self._refused(exc, state)
        shop = ShopRepository(self.s)
        if not await shop.add_invoice(invoice_id=invoice["id"], user_id=self.user_id,
                                      chat_id=self.calls.chat_id, title=state["title"],
                                      message_id=self.message_id, status=invoice["status"]):
            await self.answer(self.t("already_created"))
            return "invoice_again"  # a double tap: the first press shows it
        await self.answer(self.t("paid_from_balance") if option.get("balance")
                          else self.t("created"))
        await self.calls.edit(self.message_id, self.invoice_text(invoice, state["title"]),
                              self.invoice_markup(invoice))
        if invoice["status"] == "CREATED" and invoice.get("address"):
            # the QR keeps its Check payment button: pressed after expiry, it says so
            await self.calls.photo(invoice["address"], invoice["address"][:1024], keyboard(
                [button(self.t("btn_refresh"), f"r:{invoice['id']}")]))
        if invoice["status"] == "CREATED" and invoice.get("provider") == STARS:
            await self.calls.add(
                "sendInvoice", chat_id=self.calls.chat_id, title=state["title"][:32],
                description=(state["title"] + " · " + invoice["id"])[:255],
                payload=invoice["id"], currency="XTR",
                prices=[{"label": state["title"][:32],
                         "amount": int(invoice.get("amount_stars") or 0)}])
        return "invoice"

    async def _refused(self, exc: ShopApiError, state: dict) -> str:
        if exc.code == "INSUFFICIENT_BALANCE":
            await self.answer(self.t("insufficient"), alert=True)
            return "insufficient_balance"
        if exc.code == "PROMO_CODE_INVALID":
            reason = (exc.details or {}).get("reason") if isinstance(exc.details, dict) else None
            await self.answer(self.t("promo_refused", code=state.get("promo") or "",
                                     reason=promo_reason(self.lang, reason)), alert=True)
            return "promo_refused"
        log.warning("shop_invoice_refused", code=exc.code, status=exc.status)
        await self.answer((exc.message or exc.code)[:200], alert=True)
        return "invoice_refused"

    def invoice_text(self, invoice: dict, title: str, status: str | None = None) -> str:
        return invoice_text(self.lang, invoice, title, status)

    def invoice_markup(self, invoice: dict, status: str | None = None) -> dict:
        return invoice_markup(self.lang, invoice, status)

    async def refresh(self, invoice_id: str) -> str:
        """"Check payment" on an invoice message: its live status (an expired one says so)."""
        shop = ShopRepository(self.s)
        mine = await shop.invoice(invoice_id, for_update=True) if ID_RE.match(invoice_id) \
            else None
        if mine is None or mine.user_id != self.user_id:
            await self.answer(self.t("stale_button"), alert=True)
            return "stale_button"
        try:
            invoice = await self.api.invoice(self.user_id, invoice_id)
        except ShopApiError as exc:
            if exc.unavailable:
                raise
            await self.answer(self.t("stale_button"), alert=True)
            return "stale_button"
        if invoice["status"] == "EXPIRED":
            await self.answer(self.t("expired_alert"), alert=True)
        else:
            await self.answer(self.t(f"st_{invoice['status']}")
                              if f"st_{invoice['status']}" in _STATUS_KEYS else None)
        if invoice["status"] != mine.status:
            mine.status = invoice["status"]
        await self.calls.edit(mine.message_id, self.invoice_text(invoice, mine.title),
                              self.invoice_markup(invoice))
        return "invoice_expired" if invoice["status"] == "EXPIRED" else "invoice_status"

    # -------------------------------------------------------------- account screens

    async def subscriptions(self, _: str) -> str:
        subs = await self.api.subscriptions(self.user_id)
        lines = [self.t("sub_line", status=x["status"].lower(), until=x["expires_at"][:10],
                        devices=x["max_devices"],
                        auto=raw(self.t("auto_on") if (x.get("auto_renew") or {}).get(
                            "enabled") else "")) for x in subs]
        text = self.t("subscriptions", lines=raw("\n".join(lines) or self.t("status_none")))
        await self.show(text, keyboard([button(self.t("btn_access"), "a")] if subs else [],
                                       self.back()))
        return "subscriptions"

    async def access(self, _: str) -> str:
        sent = await access_message(self.api, self.calls, self.user_id, self.lang,
                                    self.message_id, before=self.answer)
        if not sent:
            await self.show(self.t("no_access"), keyboard([button(self.t("btn_buy"), "b")],
                                                          self.back()))
            return "no_access"
        return "access"

    async def trial(self, _: str) -> str:
        try:
            await self.api.trial(self.user_id)
        except ShopApiError as exc:
            if exc.unavailable:
                raise
            await self.answer(self.t("trial_refused"), alert=True)
            await self.menu()
            return "trial_refused"
        await self.show(self.t("trial_done"), keyboard(self.back()))
        return "trial"

    async def balance(self, _: str) -> str:
        data = await self.api.balance(self.user_id)
        lines = [self.t("entry_line", kind=e["kind"].lower().replace("_", " "),
                        amount=_money(e["amount_usd"]), day=e["created_at"][:10])
                 for e in data.get("entries", [])[:5]]
        await self.show(self.t("balance", balance=_money(data["balance_usd"]),
                               entries="\n".join(lines)),
                        keyboard([button(self.t("btn_topup", amount=a), f"tu:{a}")
                                  for a in TOP_UPS], self.back()))
        return "balance"

    async def invite(self, _: str) -> str:
        data = await self.api.referrals(self.user_id)
        bot_link = f"https://t.me/{self.shop.settings.bot_username}?start=ref_{data['code']}"
        await self.show(self.t("invite", bot_link=bot_link, link=data["link"],
                               invited=data["invited"], paid=data["paid"]),
                        keyboard(self.back()))
        return "invite"


_STATUS_KEYS = {k for k in TEXTS["en"] if k.startswith("st_")}


def invoice_text(lang: str, invoice: dict, title: str, status: str | None = None) -> str:
    """The invoice message: what is bought, the amount, the address to copy, the status line."""
    status = status or invoice["status"]
    if invoice.get("provider") == STARS and invoice.get("amount_stars"):
        amount = f"{invoice['amount_stars']} ⭐"
    else:
        amount = f"{invoice['amount_asset']} {invoice['asset']}"
    address = raw(t(lang, "invoice_address", network=invoice["network"],
                    address=invoice["address"]) if invoice.get("address") else "")
    until = raw(t(lang, "invoice_until", until=str(invoice["rate_locked_until"])[:16]
                  .replace("T", " ")) if status == "CREATED" and invoice.get(
        "rate_locked_until") else "")
    return t(lang, "invoice", id=invoice["id"], plan=title, amount=amount,
             usd=_money(invoice["amount_usd"]), address=address, until=until,
             status=t(lang, f"st_{status}") if f"st_{status}" in _STATUS_KEYS
             else status.lower())


def invoice_markup(lang: str, invoice: dict, status: str | None = None) -> dict:
    status = status or invoice["status"]
    rows: list[list[dict]] = []
    if status in {"CREATED", "DETECTED", "PENDING"}:
        if invoice.get("payment_url") and invoice.get("provider") != STARS:
            rows.append([{"text": t(lang, "btn_pay"), "url": invoice["payment_url"]}])
        rows.append([button(t(lang, "btn_refresh"), f"r:{invoice['id']}")])
    elif status == "PAID":
        rows.append([button(t(lang, "btn_access"), "a")])
    return keyboard(*rows, [button(t(lang, "btn_menu"), "m")])


def _plain(text: str) -> str:
    """A callback answer is plain text of at most 200 characters."""
    return re.sub(r"<[^>]+>", "", text)[:200]


async def access_message(api: ShopApi, calls: Calls, user_id: str, lang: str,
                         message_id: int | None, before=None) -> bool:
    """The customer's access, fetched live: the stable subscription link (or, without one, the
    backend's key) as copyable text with import buttons (the pressed message edited, or a new
    message), then its QR as a photo. The link's buttons open our import page (`open_url`,
    https), which opens the app. False when there is no active subscription."""
    subs = [x for x in await api.subscriptions(user_id) if x["status"] in {"ACTIVE", "LIMITED"}]
    if not subs:
        return False
    sub = max(subs, key=lambda x: x["expires_at"])
    access = await api.access(user_id, sub["id"])
    link = access.get("subscription_url")
    url = link or access["access_url"]
    text = t(lang, "access_link" if link else "access", until=sub["expires_at"][:10], url=url)
    if link:
        imports = [{"text": f"📲 {app['name']}", "url": app["open_url"]}
                   for app in access.get("apps") or [] if app["id"] in LINK_APPS]
    else:
        imports = [{"text": f"📋 {name}", "copy_text": {"text": tpl.format(
            url=url, q=quote(url, safe=""))[:256]}} for name, tpl in IMPORT_APPS]
    markup = keyboard(*(imports[i:i + 2] for i in range(0, len(imports), 2)),
                      [button(t(lang, "btn_menu"), "m")])
    if before is not None:
        await before()
    if message_id is not None:
        await calls.edit(message_id, text, markup)
    else:
        await calls.send(text, markup)
    await calls.photo(url, t(lang, "access_link_caption" if link else "access_caption"))
    return True


async def set_commands(bot: BotApi) -> None:
    """The command menu in Russian and English (and English as the default)."""
    for lang in ("ru", "en"):
        await bot.call("setMyCommands", commands=bot_commands(lang), language_code=lang)
    await bot.call("setMyCommands", commands=bot_commands("en"))
