--[[
  lock-renew: extends a held lock lease.

  KEYS[1]  {prefix}s:lock:<key>  STRING holder token
  ARGV[1]  token
  ARGV[2]  ttl ms

  Returns 1, or 0 when the lease was lost.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
