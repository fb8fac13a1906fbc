"""`python -m telegram api|worker|migrate|bootstrap|set-webhook`."""

from runtime.logging import get_logger
from runtime.service import ServiceDefinition, run_cli
from telegram import retention
from telegram.app import create_api
from telegram.botapi import BotApi
from telegram.config import Settings
from telegram.shop import set_commands
from telegram.worker import build_worker

log = get_logger("telegram")


async def set_webhook(settings: Settings, args: list[str]) -> int:
    """Register `APP_BASE_URL/api/v1/telegram/webhook` with the secret token, and the bot's
    commands."""
    url = args[0] if args else f"{settings.app_base_url.rstrip('/')}/api/v1/telegram/webhook"
    bot = BotApi(settings.api_base, settings.bot_token)
    try:
        await bot.call("setWebhook", url=url, secret_token=settings.webhook_secret,
                       allowed_updates=["message", "edited_message", "pre_checkout_query",
                                        "callback_query"],
                       max_connections=40)
        await set_commands(bot)  # the shop bot's command menu, in Russian and English
        info = await bot.call("getWebhookInfo")
    finally:
        await bot.close()
    log.info("webhook_set", url=info.get("url"))
    return 0


definition = ServiceDefinition(name="telegram", settings_factory=Settings, create_api=create_api,
                               build_worker=build_worker, retention=retention.rules,
                               commands={"set-webhook": set_webhook})

if __name__ == "__main__":
    run_cli(definition)
