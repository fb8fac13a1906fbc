"""CSAT in the bot: once a ticket is closed, its customer is asked "How did we do?" with 1-5
buttons, once per ticket (the row's event id is the ticket's); a press records the score through
the tickets API as the customer (once: a second press is told "already rated") and the question
is edited into a thank-you. In the customer's language.
"""

from __future__ import annotations

import html

from contracts.tickets import TicketClosedV1
from telegram.repository import ShopRepository, TelegramRepository
from telegram.shopapi import ShopApiError
from telegram.texts import language_of

PREFIX = "cs"  # callback data `cs:<ticket id>:<score>` (at most 64 bytes: ids are 32 hex)

TEXTS = {
    "en": {"ask": "⭐ How did we do with “{subject}”? Rate our support from 1 (bad) to 5 "
                  "(great).",
           "ask_plain": "⭐ How did we do? Rate our support from 1 (bad) to 5 (great).",
           "thanks": "🙏 Thank you for rating our support: {stars}",
           "thanked": "Thank you!",
           "already": "You have already rated this ticket.",
           "reopened": "This ticket is open again: rate it once it is closed."},
    "ru": {"ask": "⭐ Как мы справились с обращением «{subject}»? Оцените поддержку от 1 "
                  "(плохо) до 5 (отлично).",
           "ask_plain": "⭐ Как мы справились? Оцените поддержку от 1 (плохо) до 5 (отлично).",
           "thanks": "🙏 Спасибо за оценку нашей поддержки: {stars}",
           "thanked": "Спасибо!",
           "already": "Вы уже оценили это обращение.",
           "reopened": "Обращение снова открыто: оцените его, когда оно будет закрыто."},
}


def text(lang: str, key: str, **values: str) -> str:
    return TEXTS.get(lang, TEXTS["en"])[key].format(
        **{k: html.escape(v, quote=False) for k, v in values.items()})


def buttons(ticket_id: str) -> dict:
    return {"inline_keyboard": [[{"text": str(n), "callback_data": f"{PREFIX}:{ticket_id}:{n}"}
                                 for n in range(1, 6)]]}


async def ask(repo: TelegramRepository, event: TicketClosedV1, subject: str | None
              ) -> int | None:
    """The question to the customer's chat, once per ticket (a reopened and closed again
    ticket is not asked again); None when the customer has no linked chat or blocked the
    bot."""
    link = await repo.link_for_user(event.user_id)
    if link is None:
        return None
    user = await ShopRepository(repo.session).bot_user_by_chat(link.chat_id)
    if user is not None and user.bot_blocked_at is not None:
        return None
    lang = language_of(user.language if user else None, user.language_code if user else None)
    body = text(lang, "ask", subject=" ".join(subject.split())) if subject else \
        text(lang, "ask_plain")
    return await repo.add_outgoing(
        event_id=f"csat-{event.ticket_id}", ticket_id=event.ticket_id, chat_id=link.chat_id,
        kind="csat_prompt", seq=event.seq, method="sendMessage",
        params={"chat_id": link.chat_id, "text": body, "parse_mode": "HTML",
                "reply_markup": buttons(event.ticket_id)})


async def rate(screen, arg: str) -> str:
    """A score button pressed (`screen`: the shop's `Screen` of the press)."""
    ticket_id, _, score = arg.rpartition(":")
    if not ticket_id or score not in {"1", "2", "3", "4", "5"}:
        await screen.answer(screen.t("stale_button"), alert=True)
        return "unknown_button"
    lang = screen.lang
    thanks = text(lang, "thanks", stars="⭐" * int(score))
    try:
        await screen.api.rate(screen.user_id, ticket_id, int(score))
    except ShopApiError as exc:
        reason = (exc.details or {}).get("reason") if isinstance(exc.details, dict) else None
        if exc.status == 409 and reason == "already_rated":
            await screen.answer(text(lang, "already"), alert=True)
            await screen.calls.edit(screen.message_id, text(lang, "thanked"))
            return "csat_already_rated"
        if exc.status == 409:
            await screen.answer(text(lang, "reopened"), alert=True)
            return "csat_not_closed"
        if exc.status == 404:
            await screen.answer(screen.t("stale_button"), alert=True)
            return "unknown_button"
        raise
    await screen.answer(text(lang, "thanked"))
    await screen.calls.edit(screen.message_id, thanks)
    return "csat_rated"
