-- Palisade fleet membership: one instance's heartbeat, and the count of live ones.
--
-- KEYS[1]   the scope's members: a sorted set, member = instance id, score = the
--           server's time of its last heartbeat, in milliseconds
-- ARGV[1]   this instance's id
-- ARGV[2]   how long a heartbeat counts, milliseconds (>= 1)
-- ARGV[3]   1 to leave (remove this instance), 0 to beat
--
-- Time is the server's (TIME), never a client's. Members older than ARGV[2] are removed
-- on every call, and the set expires when no one has beaten for ARGV[2]: its size is the
-- number of instances alive within the last ARGV[2].
--
-- Reply: the number of live members (this one included when beating).
local ttl = tonumber(ARGV[2])
if ttl == nil or ttl < 1 then
  return redis.error_reply('ERR palisade heartbeat: bad expiry')
end
if redis.replicate_commands then
  redis.replicate_commands()
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
