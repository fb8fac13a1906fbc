-- wrk script: Telegram updates with unique update ids, from a chat the bot ignores.
local secret = os.getenv("WEBHOOK_SECRET") or "dev-telegram-webhook-secret"
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
request = function()
  local id = math.random(1, 2^31) * 1000 + math.random(0, 999)
  local body = string.format(
    '{"update_id": %d, "message": {"message_id": 1, "date": 0, "chat": {"id": -42, ' ..
    '"type": "group"}, "from": {"id": 7, "is_bot": false, "first_name": "b"}, "text": "hi"}}', id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Telegram-Bot-Api-Secret-Token"] = secret
  return wrk.format(nil, nil, nil, body)
end
