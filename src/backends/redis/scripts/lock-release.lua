--[[
  lock-release: frees a lock if the caller still holds it.

  KEYS[1]  {prefix}s:lock:<key>  STRING holder token
  ARGV[1]  token

  Returns 1, or 0 when the lease was already lost.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
