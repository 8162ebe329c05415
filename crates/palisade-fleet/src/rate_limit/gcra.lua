-- Palisade fleet rate limit, exact mode: GCRA over N limits, all or nothing.
--
-- KEYS[i]          limit i's theoretical arrival time (TAT): microseconds of this
--                  server's clock, an integer written as a decimal string
-- ARGV[2i-1]       limit i's emission interval T, microseconds (>= 1)
-- ARGV[2i]         limit i's tolerance tau = (burst - 1) * T, microseconds
-- ARGV[2N+1]       optional: '1' = a missing key starts *spent* (TAT = now + tau, its
--                  burst counted as used), for the refill window after an outage, when
--                  the instances' local shares have already spent the burst; absent or
--                  '0' = a missing key starts fresh (TAT = now)
--
-- Time is the server's (TIME), never a client's. A limit admits when
-- max(TAT, now) - now <= tau; the request is admitted only when every limit admits, and
-- then every TAT moves to max(TAT, now) + T. A refusal changes nothing.
-- Each key expires when its TAT returns to now: an expired key and a fresh one are the
-- same state, so key memory is bounded by the keys touched within one burst's refill.
--
-- Reply: {1, 0, 0} admitted; {0, wait, i} refused, every limit admits again after
-- `wait` microseconds, limit i the last of them.
if #KEYS == 0 or (#ARGV ~= 2 * #KEYS and #ARGV ~= 2 * #KEYS + 1) then
  return redis.error_reply('ERR palisade gcra: want N keys and 2N or 2N+1 arguments')
end
local spent = #ARGV == 2 * #KEYS + 1 and ARGV[#ARGV] == '1'
-- Redis >= 5 replicates a script's effects by default; 3.2-4 must be asked to, or a
-- script that reads TIME may not write.
if redis.replicate_commands then
  redis.replicate_commands()
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local next_tat = {}
local wait, worst = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  if interval == nil or tolerance == nil or interval < 1 or tolerance < 0 then
    return redis.error_reply('ERR palisade gcra: bad interval or tolerance')
  end
  -- A missing key (false) or a value that is not a number is a fresh limit, or a spent
  -- one when asked.
  local tat = tonumber(redis.call('GET', KEYS[i]))
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
  local late = tat - now - tolerance
  if late > wait then
    wait = late
    worst = i
  end
  next_tat[i] = tat + interval
end
if worst > 0 then
  return {0, wait, worst}
end
for i = 1, #KEYS do
  local ttl_ms = math.ceil((next_tat[i] - now) / 1000)
  redis.call('SET', KEYS[i], string.format('%d', next_tat[i]), 'PX', string.format('%d', ttl_ms))
end
return {1, 0, 0}
