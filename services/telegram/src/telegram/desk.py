"""The support desk in the support chat: operators' commands in a ticket's topic, and what the
topic shows of the desk's ticket events (notes, assignment, canned replies sent).

Commands are for operators (`TELEGRAM_OPERATOR_IDS`) and are answered in the topic:
`/note <text>`, `/r <name>`, `/close`, `/assign`, `/unassign` go to the tickets service as
`telegram.support_command.received`; `/extend` and `/resend` are the ADMINs'
(telegram.desk_admin); anything else gets a short help. A note is only ever
written into the support chat: the desk's rows never target a customer's chat.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.telegram import SupportCommandReceivedV1
from contracts.tickets import MessageAddedV1, NoteAddedV1, TicketAssignedV1, TicketStatusChangedV1
from runtime.outbox import Outbox
from telegram.botapi import BotApi, TelegramError
from telegram.models import Outgoing, TicketThread
from telegram.repository import TelegramRepository

# Row kinds the desk writes into a ticket's topic (delivered in the ticket's order; they never
# reopen a closed topic): a note or notice, and the topic's title following the ticket's state.
DESK_KINDS = {"topic_note", "topic_title"}
# The topic title's prefix per ticket status: red waits for support, yellow for the customer.
STATE_ICONS = {"OPEN": "🔴", "PENDING_SUPPORT": "🔴", "PENDING_USER": "🟡", "CLOSED": "✅"}
TICKET_COMMANDS = {"note", "r", "close", "assign", "unassign"}
COMMAND_RE = re.compile(r"^/([A-Za-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)

HELP = ("ℹ️ Commands in a ticket's topic:\n"
        "/note <text> — internal note (the customer never sees it)\n"
        "/r <name> — send a canned reply in the customer's language\n"
        "/assign — assign the ticket to me · /unassign\n"
        "/close — close the ticket\n"
        "/extend <days> — add days to the customer's subscription (ADMINs)\n"
        "/resend — send the customer their access link in the bot (ADMINs)\n"
        "Any other text is sent to the customer.")
NEEDS_ARGUMENT = {"note": "ℹ️ Write the note after the command: /note <text>",
                  "r": "ℹ️ Name the canned reply: /r <name>"}


def parse(text: str) -> tuple[str, str] | None:
    """`(command, argument)` of a slash command, the command lower-cased; None for other text."""
    match = COMMAND_RE.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def note_text(e: NoteAddedV1) -> str:
    if e.origin == "TELEGRAM":
        return "📝 Note saved (staff only, the customer does not see it)."
    who = f" by {_esc(e.author_name)}" if e.author_name else ""
    return (f"📝 Internal note{who} (web panel, staff only):"
            f"<blockquote>{_esc(e.body[:3900])}</blockquote>")


def assigned_text(e: TicketAssignedV1) -> str:
    if e.assignee_id is None:
        return "👤 Unassigned."
    return f"👤 Assigned to {_esc(e.assignee_name or e.assignee_id)}."


def canned_text(e: MessageAddedV1) -> str:
    return (f"📋 Canned reply “{_esc(e.canned or '')}” sent to the customer:"
            f"<blockquote>{_esc(e.body[:3900])}</blockquote>")


def topic_name(ticket_id: str, subject: str, status: str) -> str:
    """A ticket topic's title in a state: `<icon> #<first 6 of the id> <subject>`."""
    line = " ".join(subject.split())
    return f"{STATE_ICONS.get(status, '')} #{ticket_id[:6]} {line}".strip()[:128]


async def record_desk_event(repo: TelegramRepository, chat: int, event_id: str,
                            event) -> int | None:
    """The topic row of a desk event (NoteAddedV1, TicketAssignedV1, and the title change of
    TicketStatusChangedV1); None for other events."""
    if isinstance(event, TicketStatusChangedV1):
        await repo.ensure_thread(event.ticket_id, event.user_id, chat, None)
        return await repo.add_outgoing(event_id=event_id, ticket_id=event.ticket_id,
                                       chat_id=chat, kind="topic_title", seq=event.seq,
                                       text=event.to_status)
    if isinstance(event, NoteAddedV1):
        text = note_text(event)
    elif isinstance(event, TicketAssignedV1):
        text = assigned_text(event)
    else:
        return None
    await repo.ensure_thread(event.ticket_id, event.user_id, chat, None)
    return await repo.add_outgoing(event_id=event_id, ticket_id=event.ticket_id, chat_id=chat,
                                   kind="topic_note", seq=event.seq, text=text,
                                   parse_mode="HTML")


async def topic_step(bot: BotApi, thread: TicketThread, row: Outgoing, forum: bool
                     ) -> dict | None:
    """Deliver a desk row into the ticket's topic; the message sent, None for a title edit (a
    plain group has no titles: nothing to do)."""
    if row.kind == "topic_title":
        if forum and thread.message_thread_id is not None and thread.subject:
            name = topic_name(thread.ticket_id, thread.subject, row.text or "")
            try:
                await bot.call("editForumTopic", chat_id=thread.chat_id,
                               message_thread_id=thread.message_thread_id, name=name)
            except TelegramError as exc:
                if "TOPIC_NOT_MODIFIED" not in exc.description:
                    raise
        return None
    return await bot.send_message(thread.chat_id, row.text or "",
                                  thread_id=thread.message_thread_id if forum else None,
                                  reply_to=None if forum else thread.root_message_id,
                                  parse_mode=row.parse_mode)


async def topic_command(s: AsyncSession, events: Outbox, *, ticket_id: str, thread_id: int,
                        chat_id: int, update_id: int, message: dict, sender: dict, text: str,
                        received_at: datetime) -> tuple[str, list[int]] | None:
    """An operator's slash command in the ticket's topic; None when `text` is no command (then
    it is a reply to the customer)."""
    parsed = parse(text)
    if parsed is None:
        return None
    command, argument = parsed
    repo = TelegramRepository(s)

    async def answer(body: str) -> list[int]:
        oid = await repo.add_outgoing(event_id=f"update-{update_id}", ticket_id=None,
                                      chat_id=chat_id, thread_id=thread_id, kind="desk_answer",
                                      seq=0, text=body)
        return [oid] if oid else []

    if command not in TICKET_COMMANDS:
        return "desk:help", await answer(HELP)
    if command in NEEDS_ARGUMENT and not argument:
        return "desk:help", await answer(NEEDS_ARGUMENT[command])
    name = " ".join(filter(None, [sender.get("first_name"), sender.get("last_name")])) or None
    await events.add(s, SupportCommandReceivedV1(
        ticket_id=ticket_id, command=command, argument=argument[:4000],
        operator_telegram_id=sender["id"], operator_name=name, chat_id=chat_id,
        telegram_message_id=message["message_id"], update_id=update_id,
        received_at=received_at))
    return f"desk:{command}", []
