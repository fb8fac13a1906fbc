"""The shop bot's texts in Russian and English, and how a customer's language is chosen.

A customer's language is the one they chose with the Language button, else the one their
Telegram app reports (`language_code`: Russian for `ru`, `uk`, `be`, `kk`, English otherwise).
Texts are HTML (`parse_mode="HTML"`): values put into them are escaped by `t`.
"""

from __future__ import annotations

import html

LANGUAGES = ("ru", "en")
RUSSIAN_CODES = ("ru", "uk", "be", "kk")


def language_of(chosen: str | None, language_code: str | None) -> str:
    if chosen in LANGUAGES:
        return chosen
    code = (language_code or "").lower().split("-", 1)[0]
    return "ru" if code in RUSSIAN_CODES else "en"


TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "menu": "🛡 <b>VPN shop</b>\n{status}\n\nChoose what to do:",
        "status_none": "You have no subscription yet.",
        "status_active": "Subscription: active until {until}.",
        "status_other": "Subscription: {status} (until {until}).",
        "btn_buy": "🛒 Buy",
        "btn_subscription": "📄 My subscription",
        "btn_access": "🔑 Access",
        "btn_trial": "🎁 Free trial",
        "btn_balance": "💰 Balance",
        "btn_invite": "👥 Invite friends",
        "btn_language": "🌐 Language",
        "btn_support": "💬 Support",
        "btn_back": "⬅️ Back",
        "btn_menu": "🏠 Menu",
        "plans": "🛒 <b>Choose a plan</b>",
        "plan_line": "{name}: ${price} · {days} days · {devices} devices",
        "no_plans": "No plans are on sale right now.",
        "methods": "🛒 <b>{plan}</b> · ${price}\n\nHow do you want to pay?",
        "method_balance": "💰 From balance (${balance})",
        "method_stars": "⭐ Telegram Stars",
        "promo_ask": ("🛒 <b>{plan}</b> · ${price}\nPayment: {method}\n{promo}\n"
                      "Have a promo code? Press “Promo code” and type it. Otherwise create "
                      "the invoice."),
        "promo_none": "Promo code: none",
        "promo_applied": "Promo code {code}: −${discount}{days} → <b>${total}</b>",
        "promo_days": ", +{days} days",
        "promo_type": "⌨️ Type your promo code in this chat.",
        "promo_refused": "❌ Promo code {code} is not accepted: {reason}.",
        "btn_promo": "🏷 Promo code",
        "btn_create": "✅ Create invoice",
        "invoice": ("🧾 <b>Invoice</b> {id}\n{plan}\nAmount: <b>{amount}</b> (${usd})\n"
                    "{address}{until}\nStatus: {status}"),
        "invoice_address": "Address ({network}): <code>{address}</code>\n",
        "invoice_until": "Pay before {until} UTC.",
        "btn_pay": "💳 Pay",
        "btn_refresh": "🔄 Check payment",
        "st_CREATED": "⏳ waiting for payment",
        "st_DETECTED": "👀 payment detected, waiting for confirmations",
        "st_PAID": "✅ paid",
        "st_EXPIRED": "⌛ expired",
        "st_CANCELED": "✖️ canceled",
        "st_REFUNDED": "↩️ refunded",
        "st_UNDERPAID": "⚠️ paid too little: write to support",
        "created": "Invoice created.",
        "already_created": "This invoice exists already.",
        "expired_alert": "This invoice has expired. Create a new one from Buy.",
        "stale_button": "This button is out of date. Open the menu again.",
        "paid_from_balance": "Paid from your balance.",
        "insufficient": "Your balance is not enough. Top it up or choose another method.",
        "unavailable": "The shop is unavailable for a moment. Please try again in a minute.",
        "access": ("🔑 <b>Your access</b> (until {until})\n<code>{url}</code>\n\n"
                   "Tap the key to copy it, or import it into an app:"),
        "access_caption": "QR code of your access key",
        "access_link": ("🔑 <b>Your subscription link</b> (until {until})\n<code>{url}</code>\n\n"
                        "Tap the link to copy it, or open it in your app. It stays the same "
                        "for good, even when your access moves to another server."),
        "access_link_caption": "QR code of your subscription link",
        "no_access": "You have no active subscription. Take the trial or buy a plan.",
        "subscriptions": "📄 <b>Your subscriptions</b>\n{lines}",
        "sub_line": "• {status} until {until} · {devices} devices{auto}",
        "auto_on": " · auto-renewal on",
        "trial_done": "🎁 Your free trial is on its way: the access message follows in a moment.",
        "trial_refused": "The free trial is only for new customers.",
        "balance": "💰 <b>Balance: ${balance}</b>\n{entries}\nTop up by:",
        "entry_line": "• {kind} {amount} ({day})",
        "btn_topup": "+${amount}",
        "topup_plan": "Balance top-up ${amount}",
        "invite": ("👥 <b>Invite friends</b>\nShare your link; you are rewarded when a friend "
                   "buys their first plan.\n\nIn Telegram: <code>{bot_link}</code>\n"
                   "On the web: <code>{link}</code>\nInvited: {invited}, paid: {paid}."),
        "language": "🌐 Choose your language:",
        "language_set": "Language: English.",
        "support": ("💬 Write your question in this chat: support answers here. Help with a "
                    "payment: /paysupport"),
        "unlinked": ("Your Telegram is not linked to an account yet. Press /start to create "
                     "one."),
        "notice_paid": "✅ Invoice {id} is paid. Thank you!",
        "notice_refunded": "↩️ Invoice {id} was refunded.",
        "notice_activated": "✅ Your VPN subscription is active until {until}.",
        "notice_extended": "➕ Your subscription now runs until {until}.",
        "notice_expiring": "⏳ Your subscription ends in {days} days ({until}).",
        "notice_expiring_one": "⏳ Your subscription ends in 1 day ({until}).",
        "notice_expired": "⌛ Your subscription has expired.",
        "notice_resumed": "▶️ Your subscription is active again until {until}.",
        "notice_suspended": "⏸ Your subscription is suspended. Contact support if this is "
                            "unexpected.",
        "notice_limited": ("📵 Your traffic allowance is used up: the VPN will not connect "
                           "until it renews on {until}. Renew now for a fresh allowance."),
        "notice_limited_renewal": ("📵 Your traffic allowance is used up: the VPN will not "
                                   "connect until you renew your plan."),
        "btn_renew": "🔄 Renew",
        "support_replied": "💬 Support replied to “{subject}”:\n\n",
        "btn_web": "🌐 On the web",
        "notice_short": ("Auto-renewal needs ${price} and your balance holds ${balance}: top "
                         "up, or renew here."),
        "cmd_menu": "Main menu",
        "cmd_buy": "Buy a plan",
        "cmd_access": "Your access key",
        "cmd_balance": "Balance and top-up",
        "cmd_language": "Language",
        "cmd_help": "Help",
        "cmd_paysupport": "Help with a payment",
        # billing's own status of an invoice whose payment is seen, not yet confirmed
        "st_PENDING": "👀 payment detected, waiting for confirmations",
        # the private chat's answers (telegram.service)
        "help": ("I am the bot of the VPN service: the shop and support in one chat.\n"
                 "/menu: buy, renew, your access, balance, invite friends\n"
                 "/status: your subscription\n/login: sign in on the web site\n"
                 "/paysupport: help with a payment\n/help: this message\n\n"
                 "Write your question here and our team will answer."),
        "blocked": "⛔ Your account is blocked. Support cannot take messages from it.",
        "paysupport": ("Help with a payment: write here what happened (the date, the amount, "
                       "what you bought) and our support team answers in this chat, usually "
                       "within a day. You can also open a ticket in the web panel under Support. "
                       "Refunds of Telegram Stars go back to your Stars balance in Telegram."),
        "unlinked_chat": ("Your Telegram is not linked to an account yet. Press /start to "
                          "create one here, or, if you have an account on the web site, sign "
                          "in there, open Settings and press “Link Telegram”, then follow the "
                          "link."),
        "message_taken": "✉️ Got it: support will answer here.",
        "status_text_none": "You have no subscription yet. Press /menu to choose a plan.",
        "status_text": "Subscription: {status}.",
        "status_text_until": "Subscription: {status} until {until}.",
        "link_invalid": "This link is invalid or has expired. Create a new one in the web panel.",
        "link_taken": ("This Telegram already has an account of its own with a subscription or "
                       "purchases on it. Use that one (/login signs you in on the web site), or "
                       "write here to support to bring the two together."),
        "linked": ("✅ Your Telegram account is now linked. Write here any time to reach "
                   "support."),
        "stars_paid": ("⭐ Payment received, thank you! Your purchase is being applied; the panel "
                       "shows it in a moment. Help with a payment: /paysupport"),
        # accounts made and used from Telegram (telegram.accounts)
        "acct_welcome": ("✅ Your account is ready, no email needed.\n"
                         "/menu: buy, renew, your access\n"
                         "/login: a one-time link to sign in on the web site\n"
                         "/help: what I can do\n\n"
                         "Already have an account on the web site? Open Settings there and "
                         "press “Link Telegram” instead."),
        "acct_invited": ("👋 You joined by invitation: your friend is rewarded when you buy your "
                         "first plan."),
        "acct_referral_linked": ("You already have an account, so this invitation is for "
                                 "someone new. Share your own link from “Invite friends”."),
        "acct_no_account": "You have no account yet: press /start to create one.",
        "acct_pay_unlinked": ("To open this invoice, link this Telegram to your account first: "
                              "on the web site open Settings and press “Link Telegram”."),
        "acct_invoice_unknown": "This invoice was not found in your account.",
        "acct_invoice_unavailable": ("The invoice cannot be shown right now. Please try again "
                                     "in a minute."),
        "acct_login_limit": ("You asked for several sign-in links already. Please try again in "
                             "an hour."),
        "acct_login_link": ("🔑 Your sign-in link for the web site (it works once, for "
                            "{minutes} minutes; do not share it):\n{url}"),
    },
    "ru": {
        "menu": "🛡 <b>VPN-магазин</b>\n{status}\n\nВыберите действие:",
        "status_none": "Подписки пока нет.",
        "status_active": "Подписка активна до {until}.",
        "status_other": "Подписка: {status} (до {until}).",
        "btn_buy": "🛒 Купить",
        "btn_subscription": "📄 Моя подписка",
        "btn_access": "🔑 Доступ",
        "btn_trial": "🎁 Пробный период",
        "btn_balance": "💰 Баланс",
        "btn_invite": "👥 Пригласить друзей",
        "btn_language": "🌐 Язык",
        "btn_support": "💬 Поддержка",
        "btn_back": "⬅️ Назад",
        "btn_menu": "🏠 Меню",
        "plans": "🛒 <b>Выберите тариф</b>",
        "plan_line": "{name}: ${price} · {days} дн. · устройств: {devices}",
        "no_plans": "Сейчас нет тарифов в продаже.",
        "methods": "🛒 <b>{plan}</b> · ${price}\n\nКак вы хотите оплатить?",
        "method_balance": "💰 С баланса (${balance})",
        "method_stars": "⭐ Telegram Stars",
        "promo_ask": ("🛒 <b>{plan}</b> · ${price}\nОплата: {method}\n{promo}\n"
                      "Есть промокод? Нажмите «Промокод» и введите его. Иначе создайте счёт."),
        "promo_none": "Промокод: нет",
        "promo_applied": "Промокод {code}: −${discount}{days} → <b>${total}</b>",
        "promo_days": ", +{days} дн.",
        "promo_type": "⌨️ Введите промокод в этот чат.",
        "promo_refused": "❌ Промокод {code} не принят: {reason}.",
        "btn_promo": "🏷 Промокод",
        "btn_create": "✅ Создать счёт",
        "invoice": ("🧾 <b>Счёт</b> {id}\n{plan}\nСумма: <b>{amount}</b> (${usd})\n"
                    "{address}{until}\nСтатус: {status}"),
        "invoice_address": "Адрес ({network}): <code>{address}</code>\n",
        "invoice_until": "Оплатите до {until} UTC.",
        "btn_pay": "💳 Оплатить",
        "btn_refresh": "🔄 Проверить оплату",
        "st_CREATED": "⏳ ждём оплату",
        "st_DETECTED": "👀 платёж найден, ждём подтверждений",
        "st_PAID": "✅ оплачен",
        "st_EXPIRED": "⌛ истёк",
        "st_CANCELED": "✖️ отменён",
        "st_REFUNDED": "↩️ возвращён",
        "st_UNDERPAID": "⚠️ оплачено меньше нужного: напишите в поддержку",
        "created": "Счёт создан.",
        "already_created": "Этот счёт уже создан.",
        "expired_alert": "Срок этого счёта истёк. Создайте новый через «Купить».",
        "stale_button": "Эта кнопка устарела. Откройте меню заново.",
        "paid_from_balance": "Оплачено с баланса.",
        "insufficient": "На балансе не хватает средств. Пополните его или выберите другой "
                        "способ.",
        "unavailable": "Магазин временно недоступен. Попробуйте через минуту.",
        "access": ("🔑 <b>Ваш доступ</b> (до {until})\n<code>{url}</code>\n\n"
                   "Нажмите на ключ, чтобы скопировать, или импортируйте в приложение:"),
        "access_caption": "QR-код вашего ключа доступа",
        "access_link": ("🔑 <b>Ваша ссылка подписки</b> (до {until})\n<code>{url}</code>\n\n"
                        "Нажмите на ссылку, чтобы скопировать, или откройте её в приложении. "
                        "Она не меняется, даже когда доступ переезжает на другой сервер."),
        "access_link_caption": "QR-код вашей ссылки подписки",
        "no_access": "Активной подписки нет. Возьмите пробный период или купите тариф.",
        "subscriptions": "📄 <b>Ваши подписки</b>\n{lines}",
        "sub_line": "• {status} до {until} · устройств: {devices}{auto}",
        "auto_on": " · автопродление включено",
        "trial_done": "🎁 Пробный период оформлен: сообщение с доступом придёт через минуту.",
        "trial_refused": "Пробный период только для новых клиентов.",
        "balance": "💰 <b>Баланс: ${balance}</b>\n{entries}\nПополнить на:",
        "entry_line": "• {kind} {amount} ({day})",
        "btn_topup": "+${amount}",
        "topup_plan": "Пополнение баланса на ${amount}",
        "invite": ("👥 <b>Пригласите друзей</b>\nПоделитесь ссылкой: вы получите награду, когда "
                   "друг купит первый тариф.\n\nВ Telegram: <code>{bot_link}</code>\n"
                   "На сайте: <code>{link}</code>\nПриглашено: {invited}, оплатили: {paid}."),
        "language": "🌐 Выберите язык:",
        "language_set": "Язык: русский.",
        "support": ("💬 Напишите вопрос в этот чат: поддержка ответит здесь. Помощь с оплатой: "
                    "/paysupport"),
        "unlinked": "Ваш Telegram ещё не связан с аккаунтом. Нажмите /start, чтобы создать его.",
        "notice_paid": "✅ Счёт {id} оплачен. Спасибо!",
        "notice_refunded": "↩️ По счёту {id} сделан возврат.",
        "notice_activated": "✅ Ваша VPN-подписка активна до {until}.",
        "notice_extended": "➕ Подписка продлена до {until}.",
        "notice_expiring": "⏳ Подписка закончится через {days} дн. ({until}).",
        "notice_expiring_one": "⏳ Подписка закончится через 1 день ({until}).",
        "notice_expired": "⌛ Срок подписки истёк.",
        "notice_resumed": "▶️ Подписка снова активна до {until}.",
        "notice_suspended": "⏸ Подписка приостановлена. Если это неожиданно, напишите в "
                            "поддержку.",
        "notice_limited": ("📵 Трафик по тарифу исчерпан: VPN не подключится до его "
                           "обновления {until}. Продлите тариф, чтобы получить новый объём."),
        "notice_limited_renewal": ("📵 Трафик по тарифу исчерпан: VPN не подключится, пока вы "
                                   "не продлите тариф."),
        "btn_renew": "🔄 Продлить",
        "support_replied": "💬 Поддержка ответила на «{subject}»:\n\n",
        "btn_web": "🌐 На сайте",
        "notice_short": ("Для автопродления нужно ${price}, на балансе ${balance}: пополните "
                         "баланс или продлите здесь."),
        "cmd_menu": "Главное меню",
        "cmd_buy": "Купить тариф",
        "cmd_access": "Ключ доступа",
        "cmd_balance": "Баланс и пополнение",
        "cmd_language": "Язык",
        "cmd_help": "Помощь",
        "cmd_paysupport": "Помощь с оплатой",
        "st_PENDING": "👀 платёж виден, ждём подтверждений",
        "help": ("Я бот VPN-сервиса: магазин и поддержка в одном чате.\n"
                 "/menu: купить, продлить, ваш доступ, баланс, пригласить друзей\n"
                 "/status: ваша подписка\n/login: вход на сайт\n"
                 "/paysupport: помощь с оплатой\n/help: это сообщение\n\n"
                 "Напишите вопрос здесь, и наша команда ответит."),
        "blocked": "⛔ Ваш аккаунт заблокирован. Поддержка не принимает от него сообщения.",
        "paysupport": ("Помощь с оплатой: напишите здесь, что случилось (дата, сумма, что вы "
                       "купили), и поддержка ответит в этом чате, обычно в течение дня. Можно "
                       "также открыть обращение на сайте в разделе «Поддержка». Возврат "
                       "Telegram Stars приходит на ваш баланс Stars в Telegram."),
        "unlinked_chat": ("Ваш Telegram ещё не привязан к аккаунту. Нажмите /start, чтобы "
                          "создать его здесь, или, если у вас есть аккаунт на сайте, войдите "
                          "туда, откройте «Настройки», нажмите «Привязать Telegram» и перейдите "
                          "по ссылке."),
        "message_taken": "✉️ Получили: поддержка ответит здесь.",
        "status_text_none": "Подписки пока нет. Нажмите /menu, чтобы выбрать тариф.",
        "status_text": "Подписка: {status}.",
        "status_text_until": "Подписка: {status} до {until}.",
        "link_invalid": "Ссылка недействительна или устарела. Создайте новую на сайте.",
        "link_taken": ("У этого Telegram уже есть свой аккаунт с подпиской или покупками. "
                       "Пользуйтесь им (/login даст вход на сайт) или напишите сюда в "
                       "поддержку, чтобы объединить аккаунты."),
        "linked": ("✅ Ваш Telegram привязан. Пишите сюда в любое время, чтобы связаться с "
                   "поддержкой."),
        "stars_paid": ("⭐ Оплата получена, спасибо! Покупка применяется, через минуту она "
                       "появится в панели. Помощь с оплатой: /paysupport"),
        "acct_welcome": ("✅ Аккаунт создан, почта не нужна.\n"
                         "/menu: купить, продлить, ваш доступ\n"
                         "/login: одноразовая ссылка для входа на сайт\n"
                         "/help: что я умею\n\n"
                         "Уже есть аккаунт на сайте? Откройте там «Настройки» и нажмите "
                         "«Привязать Telegram»."),
        "acct_invited": ("👋 Вы пришли по приглашению: ваш друг получит награду, когда вы купите "
                         "первый тариф."),
        "acct_referral_linked": ("У вас уже есть аккаунт, так что это приглашение для новых "
                                 "пользователей. Поделитесь своей ссылкой из «Пригласить "
                                 "друзей»."),
        "acct_no_account": "У вас ещё нет аккаунта: нажмите /start, чтобы создать его.",
        "acct_pay_unlinked": ("Чтобы открыть этот счёт, сначала привяжите этот Telegram к "
                              "аккаунту: на сайте откройте «Настройки» и нажмите «Привязать "
                              "Telegram»."),
        "acct_invoice_unknown": "Такого счёта в вашем аккаунте нет.",
        "acct_invoice_unavailable": "Счёт сейчас не показать. Попробуйте через минуту.",
        "acct_login_limit": ("Вы уже запросили несколько ссылок для входа. Попробуйте через "
                             "час."),
        "acct_login_link": ("🔑 Ваша ссылка для входа на сайт (работает один раз, "
                            "{minutes} мин.; никому её не передавайте):\n{url}"),
    },
}

PROMO_REASONS = {
    "en": {"unknown": "no such code", "expired": "it has expired", "not_started": "not valid yet",
           "used_up": "it is used up", "already_used": "you have used it already",
           "not_for_plan": "not valid for this plan", "inactive": "it is switched off"},
    "ru": {"unknown": "такого кода нет", "expired": "срок действия истёк",
           "not_started": "ещё не действует", "used_up": "лимит использований исчерпан",
           "already_used": "вы его уже использовали", "not_for_plan": "не подходит к тарифу",
           "inactive": "отключён"},
}

COMMANDS = ("menu", "buy", "access", "balance", "language", "help", "paysupport")


def t(lang: str, key: str, **values: object) -> str:
    """The text `key` in `lang` with `values` escaped into it (values already HTML are passed
    through `raw`)."""
    text = TEXTS.get(lang, TEXTS["en"]).get(key) or TEXTS["en"][key]
    return text.format(**{k: v.html if isinstance(v, Raw) else html.escape(str(v), quote=False)
                          for k, v in values.items()})


class Raw:
    """A value already in HTML (a text of this module), put into another text as it is."""

    def __init__(self, html_text: str):
        self.html = html_text


def raw(html_text: str) -> Raw:
    return Raw(html_text)


def promo_reason(lang: str, reason: str | None) -> str:
    return PROMO_REASONS.get(lang, PROMO_REASONS["en"]).get(reason or "unknown", reason or "?")


def bot_commands(lang: str) -> list[dict[str, str]]:
    return [{"command": c, "description": TEXTS[lang][f"cmd_{c}"]} for c in COMMANDS]
