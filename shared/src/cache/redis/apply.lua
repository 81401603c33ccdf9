-- cacheflow versioned apply: makes one entity's projections match one event, atomically, and only
-- if the event's version is newer than the one the cache holds. Contract: docs/WORKER.md.
--
-- KEYS[1]                 the entity's meta hash: v = version, d = 1 for a tombstone,
--                         keys / idx = JSON lists of the entity / index keys it occupies
-- KEYS[2 .. 1+S+H]        entity keys: S string keys, then H hash keys
-- KEYS[2+S+H .. 1+S+H+Z+G] index keys: Z sorted-set keys, then G geo keys
-- ARGV[1] version (decimal)   ARGV[2] 'upsert' | 'delete' | 'fill' | 'absent'
-- ARGV[3] member (the entity id)
-- ARGV[4] tombstone TTL in ms   ARGV[5..8] S, H, Z, G
-- ARGV[9] / ARGV[10] the JSON lists stored as meta keys / idx after an upsert
-- then, upsert only: per string: value, ttl ms ('0' = none); per hash: n, field1, value1, ...;
-- per sorted set: score; per geo: lon, lat.
-- For a delete, the KEYS ranges are the keys to clear even if the meta is gone (the planner's
-- fallback: templates that need no document field).
-- 'fill' is the API's cache-aside populate: an upsert that may also rewrite the version the cache
-- already holds (its string may have expired), but never a newer one and never over a tombstone.
-- 'absent' caches a miss: KEYS[2] is the read key, ARGV[4] the marker's TTL in ms; it writes an
-- empty string there (NX) unless the cache knows a live entity or a newer tombstone. The next
-- upsert's SET replaces the marker, so a create wins at once.
-- Returns 'applied', 'deleted', 'absent' or 'stale'.

-- Versions are u64; Lua numbers are doubles, so compare the decimal strings instead.
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

local meta = KEYS[1]
local version, op, member = ARGV[1], ARGV[2], ARGV[3]
local s, h, z, g = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])

local stored = redis.call('HMGET', meta, 'v', 'keys', 'idx', 'd')
if op == 'absent' then
  if stored[1] and (stored[4] ~= '1' or newer(stored[1], version)) then return 'stale' end
  redis.call('SET', KEYS[2], '', 'PX', ARGV[4], 'NX')
  return 'absent'
end
if stored[1] and not newer(version, stored[1]) then
  local refill = op == 'fill' and stored[1] == version and stored[4] ~= '1'
  if not refill then return 'stale' end
end
if op == 'fill' then op = 'upsert' end

local first_index = 2 + s + h
local last_key = first_index + z + g - 1

-- Leave whatever the previous state occupied and this one does not. The common upsert keeps
-- the same keys: equal JSON lists skip the decoding and the loops (and the meta rewrite).
local same_keys = op == 'upsert' and stored[2] == ARGV[9]
local same_idx = op == 'upsert' and stored[3] == ARGV[10]
local function kept(from, to)
  local set = {}
  if op == 'upsert' then
    for i = from, to do set[KEYS[i]] = true end
  end
  return set
end
if stored[2] and not same_keys then
  local keep = kept(2, first_index - 1)
  for _, key in ipairs(cjson.decode(stored[2])) do
    if not keep[key] then redis.call('DEL', key) end
  end
end
if stored[3] and not same_idx then
  local keep = kept(first_index, last_key)
  for _, key in ipairs(cjson.decode(stored[3])) do
    if not keep[key] then redis.call('ZREM', key, member) end
  end
end

if op == 'delete' then
  for i = 2, first_index - 1 do redis.call('DEL', KEYS[i]) end
  for i = first_index, last_key do redis.call('ZREM', KEYS[i], member) end
  redis.call('DEL', meta)
  redis.call('HSET', meta, 'v', version, 'd', '1', 'keys', '[]', 'idx', '[]')
  redis.call('PEXPIRE', meta, ARGV[4])
  return 'deleted'
end

local a, k = 11, 2
for _ = 1, s do
  if ARGV[a + 1] == '0' then
    redis.call('SET', KEYS[k], ARGV[a])
  else
    redis.call('SET', KEYS[k], ARGV[a], 'PX', ARGV[a + 1])
  end
  a, k = a + 2, k + 1
end
for _ = 1, h do
  local n = tonumber(ARGV[a])
  -- Replace, not merge: a field that left the document leaves the hash.
  redis.call('DEL', KEYS[k])
  if n > 0 then redis.call('HSET', KEYS[k], unpack(ARGV, a + 1, a + 2 * n)) end
  a, k = a + 1 + 2 * n, k + 1
end
for _ = 1, z do
  redis.call('ZADD', KEYS[k], ARGV[a], member)
  a, k = a + 1, k + 1
end
for _ = 1, g do
  redis.call('GEOADD', KEYS[k], ARGV[a], ARGV[a + 1], member)
  a, k = a + 2, k + 1
end
if same_keys and same_idx and stored[4] == '0' then
  redis.call('HSET', meta, 'v', version)
else
  redis.call('HSET', meta, 'v', version, 'd', '0', 'keys', ARGV[9], 'idx', ARGV[10])
  -- An upsert newer than a tombstone brings the entity back: its meta must not expire any more.
  if stored[4] == '1' then redis.call('PERSIST', meta) end
end
return 'applied'
