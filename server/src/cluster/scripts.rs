//! The Lua scripts of the Redis backplane. Each runs atomically in Redis, so one admission
//! (rate windows + account hold + key-spend hold) and one settlement (release, pending
//! cost, rate correction, outbox entry) are each a single indivisible step across every
//! instance. Times come from Redis (`TIME`), never from an instance's clock.
//!
//! Amounts are nano-USD. Redis keeps them as 64-bit integers (`HINCRBY`); comparisons in
//! Lua use doubles, exact below 2^53 nano-USD (about 9 million USD per account).

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers, prepended to every script.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Sets the persisted value of a money hash when `ver` (a database-assigned version) is
-- newer than the one it holds.
local function sync(h, val, ver)
  if val == '' then return end
  local cur = redis.call('HGET', h, 'ver')
  if (not cur) or tonumber(ver) > tonumber(cur) then
    redis.call('HSET', h, 'persisted', val, 'ver', ver)
  end
end
-- Releases holds whose deadline passed (their instance stopped extending them).
local function expire(h, z, amt, now)
  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, id in ipairs(ids) do
    local a = redis.call('HGET', amt, id)
    if a then
      redis.call('HINCRBY', h, 'held', -tonumber(a))
      redis.call('HDEL', amt, id)
    end
    redis.call('ZREM', z, id)
  end
end
local function num(h, f)
  return tonumber(redis.call('HGET', h, f) or '0')
end
-- Drops admissions older than the 60 s window.
local function rl_prune(z, h, tot, now)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - 60000)
  if #old > 0 then
    local sum = 0
    for _, id in ipairs(old) do
      sum = sum + tonumber(redis.call('HGET', h, id) or '0')
      redis.call('HDEL', h, id)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - 60000)
    redis.call('DECRBY', tot, sum)
  end
end
"#;

/// Admission. KEYS: 1 epoch, 2 account hash, 3 account holds, 4 account hold amounts,
/// 5 key hash, 6 key holds, 7 key hold amounts, 8 rate admissions (zset), 9 rate tokens
/// per admission (hash), 10 rate token total.
/// ARGV: 1 epoch, 2 hold id, 3 amount, 4 hold ttl ms, 5 key limit ('' none), 6 rpm ('' none),
/// 7 tpm ('' none), 8 estimated tokens, 9 account balance ('' unknown), 10 its version,
/// 11 key spend ('' unknown), 12 its version.
/// Returns {0} admitted, {-1, epoch} epoch changed, {-2, ms} recovering, {-3, 'acct'|'key'}
/// load the persisted value and retry, {2, secs, 1 rpm | 2 tpm} rate limited,
/// {3} balance, {4} key limit.
const ADMIT: &str = r#"
local now = now_ms()
local e = redis.call('GET', KEYS[1])
if not e then return {-1, ''} end
if e ~= ARGV[1] then return {-1, e} end
local ready = tonumber(redis.call('GET', KEYS[1] .. ':ready') or '0')
if now < ready then return {-2, ready - now} end
local limited = ARGV[5] ~= ''
sync(KEYS[2], ARGV[9], ARGV[10])
if limited then sync(KEYS[5], ARGV[11], ARGV[12]) end
if not redis.call('HGET', KEYS[2], 'ver') then return {-3, 'acct'} end
if limited and not redis.call('HGET', KEYS[5], 'ver') then return {-3, 'key'} end
local rpm = tonumber(ARGV[6])
local tpm = tonumber(ARGV[7])
local est = math.max(0, tonumber(ARGV[8]))
local id = ARGV[2]
if rpm or tpm then
  rl_prune(KEYS[8], KEYS[9], KEYS[10], now)
  local best_secs, which = -1, 0
  local function refuse(wait, w)
    local secs = math.max(1, math.ceil(wait / 1000))
    if secs > best_secs then best_secs, which = secs, w end
  end
  if rpm then
    local count = redis.call('ZCARD', KEYS[8])
    if rpm <= 0 then refuse(60000, 1)
    elseif count >= rpm then
      local at = redis.call('ZRANGE', KEYS[8], count - rpm, count - rpm, 'WITHSCORES')
      refuse(tonumber(at[2]) + 60000 - now, 1)
    end
  end
  if tpm then
    local tokens = tonumber(redis.call('GET', KEYS[10]) or '0')
    local function fits(t) return t <= 0 or t + est <= tpm end
    if tpm <= 0 then refuse(60000, 2)
    elseif not fits(tokens) then
      local wait = 60000
      local all = redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES')
      for i = 1, #all, 2 do
        tokens = tokens - tonumber(redis.call('HGET', KEYS[9], all[i]) or '0')
        if fits(tokens) then wait = tonumber(all[i + 1]) + 60000 - now break end
      end
      refuse(wait, 2)
    end
  end
  if which ~= 0 then return {2, best_secs, which} end
end
local function count_request(tokens)
  if rpm or tpm then
    redis.call('ZADD', KEYS[8], now, id)
    redis.call('HSET', KEYS[9], id, tokens)
    redis.call('INCRBY', KEYS[10], tokens)
    for i = 8, 10 do redis.call('PEXPIRE', KEYS[i], 120000) end
  end
end
expire(KEYS[2], KEYS[3], KEYS[4], now)
local amount = math.max(0, tonumber(ARGV[3]))
local available = num(KEYS[2], 'persisted') - num(KEYS[2], 'pending') - num(KEYS[2], 'held')
if available <= 0 or available < amount then
  count_request(0)
  return {3}
end
if limited then
  expire(KEYS[5], KEYS[6], KEYS[7], now)
  local limit = tonumber(ARGV[5])
  local used = num(KEYS[5], 'persisted') + num(KEYS[5], 'pending')
  if used + num(KEYS[5], 'held') + amount > limit or used >= limit then
    count_request(0)
    return {4}
  end
end
count_request(est)
local deadline = now + tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[2], 'held', amount)
redis.call('ZADD', KEYS[3], deadline, id)
redis.call('HSET', KEYS[4], id, amount)
if limited then
  redis.call('HINCRBY', KEYS[5], 'held', amount)
  redis.call('ZADD', KEYS[6], deadline, id)
  redis.call('HSET', KEYS[7], id, amount)
end
return {0}
"#;

/// Settlement, at most once per request id. KEYS: 1 done marker, 2 account hash,
/// 3 account holds, 4 account hold amounts, 5 key hash, 6 key holds, 7 key hold amounts,
/// 8 rate admissions, 9 rate tokens, 10 rate total, 11 outbox stream.
/// ARGV: 1 request id, 2 cost, 3 actual tokens, 4 record (JSON), 5 user id, 6 key id.
/// Returns 1 when settled now, 0 when it already was.
const SETTLE: &str = r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then return 0 end
local id = ARGV[1]
local cost = tonumber(ARGV[2])
for _, k in ipairs({{2, 3, 4}, {5, 6, 7}}) do
  local a = redis.call('HGET', KEYS[k[3]], id)
  if a then
    redis.call('HINCRBY', KEYS[k[1]], 'held', -tonumber(a))
    redis.call('HDEL', KEYS[k[3]], id)
  end
  redis.call('ZREM', KEYS[k[2]], id)
end
redis.call('HINCRBY', KEYS[2], 'pending', cost)
redis.call('HINCRBY', KEYS[5], 'pending', cost)
local reserved = redis.call('HGET', KEYS[9], id)
if reserved then
  local actual = math.max(0, tonumber(ARGV[3]))
  redis.call('HSET', KEYS[9], id, actual)
  redis.call('INCRBY', KEYS[10], actual - tonumber(reserved))
end
redis.call('XADD', KEYS[11], '*', 'rid', id, 'user', ARGV[5], 'key', ARGV[6], 'cost', ARGV[2],
  'rec', ARGV[4])
return 1
"#;

/// Acknowledges outbox entries whose records are committed to the database, and applies
/// the persisted values read after that commit. An entry's cost leaves `pending` only if
/// this call acknowledged it (XACK answered 1), so a redelivered entry never subtracts
/// twice. KEYS: 1 outbox. ARGV: group, prefix, n, then n × (entry id, user, key, cost),
/// then m, m × (user, balance, version), then k, k × (key, spend, version).
const ACK: &str = r#"
local stream, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local i = 3
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local eid, uid, kid, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  if redis.call('XACK', stream, group, eid) == 1 then
    redis.call('HINCRBY', prefix .. 'acct:{' .. uid .. '}', 'pending', -cost)
    redis.call('HINCRBY', prefix .. 'key:{' .. kid .. '}', 'pending', -cost)
  end
  redis.call('XDEL', stream, eid)
end
local m = tonumber(ARGV[i]); i = i + 1
for _ = 1, m do
  sync(prefix .. 'acct:{' .. ARGV[i] .. '}', ARGV[i + 1], ARGV[i + 2]); i = i + 3
end
local k = tonumber(ARGV[i]); i = i + 1
for _ = 1, k do
  sync(prefix .. 'key:{' .. ARGV[i] .. '}', ARGV[i + 1], ARGV[i + 2]); i = i + 3
end
return n
"#;

/// Persisted values read from the database (top-ups, credits, the periodic refresh).
/// ARGV: prefix, m, m × (user, balance, version), k, k × (key, spend, version).
const SYNC: &str = r#"
local prefix = ARGV[1]
local i = 2
local m = tonumber(ARGV[i]); i = i + 1
for _ = 1, m do
  sync(prefix .. 'acct:{' .. ARGV[i] .. '}', ARGV[i + 1], ARGV[i + 2]); i = i + 3
end
local k = tonumber(ARGV[i]); i = i + 1
for _ = 1, k do
  sync(prefix .. 'key:{' .. ARGV[i] .. '}', ARGV[i + 1], ARGV[i + 2]); i = i + 3
end
return 1
"#;

/// The epoch of the backplane's data: a random id set when Redis holds none (first start,
/// or Redis lost its data). A new epoch refuses admissions for a grace period in which
/// every instance re-registers the holds of its requests in flight and flushes the
/// charges Redis lost. KEYS: 1 epoch. ARGV: 1 new id, 2 grace ms. Returns {epoch, created}.
const EPOCH: &str = r#"
local e = redis.call('GET', KEYS[1])
if e then return {e, 0} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[1] .. ':ready', now_ms() + tonumber(ARGV[2]))
return {ARGV[1], 1}
"#;

/// Re-registers (ARGV[4] == '1') or extends live holds. ARGV: 1 prefix, 2 ttl ms,
/// 3 n, then n × (hold id, user, key, amount, key limited 0/1), then 'register' flag.
/// Registering adds a hold that Redis lost; extending moves the deadline of one it has.
const KEEP: &str = r#"
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local register = ARGV[4 + n * 5] == '1'
local deadline = now_ms() + ttl
local i = 4
for _ = 1, n do
  local id, uid, kid, amount, lim = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local sets = {{'acct:{' .. uid .. '}'}}
  if lim == '1' then sets[2] = {'key:{' .. kid .. '}'} end
  for _, s in ipairs(sets) do
    local h = prefix .. s[1]
    if redis.call('HGET', h .. ':hamt', id) then
      redis.call('ZADD', h .. ':holds', 'XX', deadline, id)
    elseif register then
      redis.call('HSET', h .. ':hamt', id, amount)
      redis.call('ZADD', h .. ':holds', deadline, id)
      redis.call('HINCRBY', h, 'held', tonumber(amount))
    end
  end
end
return n
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

pub static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(ADMIT));
pub static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(SETTLE));
pub static ACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(ACK));
pub static SYNC_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(SYNC));
pub static EPOCH_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(EPOCH));
pub static KEEP_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(KEEP));
