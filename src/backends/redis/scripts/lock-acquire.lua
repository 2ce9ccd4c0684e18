--[[
  lock-acquire: takes the lease on a lock if it is free, with a fencing number that grows with
  every acquisition (a write fenced with an older number is refused).

  KEYS[1]  {prefix}s:lock:<key>   STRING holder token, PX = lease
  KEYS[2]  {prefix}s:fence:<key>  fencing counter (never expires)
  ARGV[1]  token
  ARGV[2]  ttl ms

  Returns the fencing number, or false when someone else holds the lock.
]]
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('INCR', KEYS[2])
