-- Shared by the scripts that put a message back in `ready` (included where a script says
-- `--#include order`, before `--#include ack`, which uses it).
-- A message's order from its stored body '<order>|<message>', as its digits: a score Redis
-- parses, no number to format; '0' (the front) when the body is damaged or missing.
local function orderOf(body)
  return (body and string.match(body, '^(%d+)|')) or '0'
end
