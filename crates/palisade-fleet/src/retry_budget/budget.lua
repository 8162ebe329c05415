-- Palisade fleet retry budget: one instance's exchange with the fleet's ledger.
--
-- KEYS[1]   the scope's ledger: a hash of per-second counts by the server's clock,
--           field 'd:<unix second>' = calls (deposits) credited in that second,
--           field 'w:<unix second>' = retry tokens granted (withdrawals) in that second
-- ARGV[1]   this instance's calls since its last exchange (deposits), >= 0
-- ARGV[2]   tokens this instance wants now, >= 0
-- ARGV[3]   ratio, in thousandths of a retry per call (0 to 10000)
-- ARGV[4]   min_per_second: the fleet's one floor, retries per second (0 to 1000000)
-- ARGV[5]   window, whole seconds (1 to 600)
--
-- Time is the server's (TIME), never a client's. The window is the `window` whole
-- seconds ending with the current one. Every call:
--   1. drops every field outside the window (and any field that is not ours), so the
--      hash holds at most 2 x window fields;
--   2. adds the deposits to the current second;
--   3. computes balance = ratio x deposits + min_per_second x window - withdrawals
--      over the window, and grants min(want, whole tokens of the balance), counting the
--      grant as withdrawn now;
--   4. sets the hash to expire window + 1 s after this call: an expired hash and an
--      empty one are the same state.
--
-- Reply: {granted, balance}: the tokens granted (0 to ARGV[2]) and the whole tokens
-- left in the fleet's balance after the grant (>= 0).
local function int(i, low, high)
  local n = tonumber(ARGV[i])
  if n == nil or n ~= math.floor(n) or n < low or n > high then
    return nil
  end
  return n
end
if #KEYS ~= 1 or #ARGV ~= 5 then
  return redis.error_reply('ERR palisade retry budget: want 1 key and 5 arguments')
end
local deposits = int(1, 0, 2 ^ 50)
local want = int(2, 0, 1000000)
local ratio = int(3, 0, 10000)
local floor = int(4, 0, 1000000)
local window = int(5, 1, 600)
if deposits == nil or want == nil or ratio == nil or floor == nil or window == nil then
  return redis.error_reply('ERR palisade retry budget: an argument is out of range')
end
-- Redis >= 5 replicates a script's effects by default; 3.2-4 must be asked to, or a
-- script that reads TIME may not write.
if redis.replicate_commands then
  redis.replicate_commands()
end
local now = tonumber(redis.call('TIME')[1])
local oldest = now - window + 1
local sum_d, sum_w = 0, 0
local stale = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local field = flat[i]
  local kind, second = string.match(field, '^([dw]):(%d+)$')
  second = tonumber(second)
  local count = tonumber(flat[i + 1])
  if kind == nil or second == nil or second < oldest or second > now
      or count == nil or count < 0 then
    stale[#stale + 1] = field
  elseif kind == 'd' then
    sum_d = sum_d + count
  else
    sum_w = sum_w + count
  end
end
-- HDEL in slices: Lua's unpack is limited by the C stack.
for first = 1, #stale, 1000 do
  redis.call('HDEL', KEYS[1], unpack(stale, first, math.min(first + 999, #stale)))
end
if deposits > 0 then
  redis.call('HINCRBY', KEYS[1], 'd:' .. now, deposits)
  sum_d = sum_d + deposits
end
-- In thousandths of a token: whole numbers, exact in a double far beyond any fleet.
local balance = ratio * sum_d + floor * window * 1000 - 1000 * sum_w
local granted = 0
if balance >= 1000 then
  granted = math.min(want, math.floor(balance / 1000))
end
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], 'w:' .. now, granted)
  balance = balance - 1000 * granted
end
redis.call('PEXPIRE', KEYS[1], (window + 1) * 1000)
return {granted, math.max(0, math.floor(balance / 1000))}
