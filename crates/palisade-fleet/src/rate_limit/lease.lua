-- Palisade fleet rate limit, lease mode: a batch of GCRA admissions granted at once.
--
-- KEYS[1]   the limit's theoretical arrival time (TAT), as in gcra.lua (the same key:
--           exact and lease decisions of one limit share one state)
-- ARGV[1]   the emission interval T, microseconds (>= 1)
-- ARGV[2]   the tolerance tau = (burst - 1) * T, microseconds
-- ARGV[3]   want: the most tokens to grant (>= 1)
-- ARGV[4]   optional: '1' = a missing key starts spent (TAT = now + tau), as in gcra.lua
--
-- Time is the server's (TIME), never a client's. Token k (k = 0, 1, ...) fits when
-- max(TAT, now) + k*T - now <= tau, so the grant is n = min(want, how many fit within
-- tau + T), and TAT moves to max(TAT, now) + n*T: exactly the state n admissions in a
-- row by gcra.lua would leave. The key expires when its TAT returns to now.
--
-- Reply: {n, wait}: n tokens granted (0 <= n <= want); wait = microseconds until the
-- next token fits (0 when one fits now; at least 1 when n = 0).
if #KEYS ~= 1 or (#ARGV ~= 3 and #ARGV ~= 4) then
  return redis.error_reply('ERR palisade lease: want 1 key and 3 or 4 arguments')
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
if interval == nil or tolerance == nil or want == nil or interval < 1 or tolerance < 0
    or want < 1 then
  return redis.error_reply('ERR palisade lease: bad interval, tolerance or want')
end
local spent = ARGV[4] == '1'
if redis.replicate_commands then
  redis.replicate_commands()
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then
  if spent then
    tat = now + tolerance
  else
    tat = now
  end
end
if tat < now then
  tat = now
end
local room = now + tolerance - tat
if room < 0 then
  return {0, -room}
end
local n = math.min(want, math.floor(room / interval) + 1)
tat = tat + n * interval
local ttl_ms = math.ceil((tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', ttl_ms))
local wait = tat - now - tolerance
if wait < 0 then
  wait = 0
end
return {n, wait}
