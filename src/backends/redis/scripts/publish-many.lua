--[[
  publish-many: PUBLISHes several messages in one call (the publications of one tick).

  (no KEYS: channels are not keys)
  ARGV[2i - 1]  channel of the i-th publication: '{prefix}topic:<topic>'
  ARGV[2i]      its encoded message

  Returns how many publications were made.
]]
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
