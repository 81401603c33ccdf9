-- cacheflow versioned apply: makes each entity's projections match one event, only if the event's
-- version is newer than the one the cache holds. One call applies a chunk of records (events, or
-- the API's cache-aside populates) in order; the whole call is atomic in Redis, so each entity's
-- change is too. Contract: docs/WORKER.md.
--
-- First the generation guard: KEYS[1 .. 2G] hold, per collection the call writes, its active
-- generation key and its extra write-targets key (see docs/WORKER.md, *Generations*); ARGV[1] = G,
-- ARGV[2 .. 2G+1] the values the caller planned with ('' for a missing key). If any differs, a
-- rebuild moved the collection to other generations since the caller looked: nothing is written
-- and the call returns the status 'generation', so the caller re-reads them and plans again.
--
-- Then ARGV[2G+2] is the number of records N. Each record then takes, in order:
--   from KEYS: the meta hash (v = version, d = 1 for a tombstone, keys / idx = JSON lists of
--              the entity / index keys it occupies), then S string keys, H hash keys,
--              Z sorted-set keys, G geo keys
--   from ARGV: version (decimal), op ('upsert' | 'delete' | 'fill' | 'absent' | 'invalidate' |
--              'purge'), member (the
--              entity id), TTL in ms (tombstone, or the absent marker's), S, H, Z, G, D (the
--              number of data arguments after the header), the JSON lists stored as meta keys /
--              idx after an upsert, then D data arguments: upsert only, per string: value,
--              ttl ms ('0' = none); per hash: n, field1, value1, ...; per sorted set: score;
--              per geo: the point's geohash score (what GEOADD would store).
-- For a delete, the KEYS ranges are the keys to clear even if the meta is gone (the planner's
-- fallback: templates that need no document field).
-- 'fill' is the API's cache-aside populate: an upsert that may also rewrite the version the cache
-- already holds (its string may have expired), but never a newer one and never over a tombstone.
-- 'absent' caches a miss: its one string key is the read key; it writes an empty string there
-- (NX, PX ttl) unless the cache knows a live entity or a newer tombstone. The next upsert's SET
-- replaces the marker, so a create wins at once.
-- 'invalidate' (operators) removes the entity's entries and index memberships, whatever its
-- version, but keeps the version (and a tombstone) in the meta, so an older event still cannot
-- come back and the next read's populate, at the store's version, can.
-- 'purge' (the auditor's repair of an orphan) clears the entity like a delete, only if the meta
-- still holds `version` ('0' = no meta); its one data argument is the store's tombstone version
-- (written as a tombstone), or '0' when the store never had the entity (the meta is removed).
-- Returns an array of N replies, one per record: 'applied', 'deleted', 'absent', 'invalidated' or
-- 'stale', or an
-- error reply when Redis refused that record's writes (WRONGTYPE: another writer's key of another
-- type). A refused record does not stop the others; like a failed single-entity script it is not
-- rolled back, but its meta is not updated either, so the entity's next event rewrites it all.

-- Locals, not global table lookups, for what runs several times per record.
local call, tonumber = redis.call, tonumber

-- Versions are u64; Lua numbers are doubles, so compare the decimal strings instead.
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- The keys KEYS[from .. to] as a set, for an upsert; a delete keeps none.
local function kept(op, from, to)
  local set = {}
  if op == 'upsert' then
    for i = from, to do set[KEYS[i]] = true end
  end
  return set
end

-- Applies the record whose meta is KEYS[k] and whose header starts at ARGV[a].
local function apply(k, a)
  local meta = KEYS[k]
  local version, op, member, ttl = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local s, h, z, g = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]),
    tonumber(ARGV[a + 7])
  local new_keys, new_idx = ARGV[a + 9], ARGV[a + 10]

  local stored = call('HMGET', meta, 'v', 'keys', 'idx', 'd')
  if op == 'absent' then
    if stored[1] and (stored[4] ~= '1' or newer(stored[1], version)) then return 'stale' end
    call('SET', KEYS[k + 1], '', 'PX', ttl, 'NX')
    return 'absent'
  end
  if op == 'purge' then
    if (stored[1] or '0') ~= version then return 'stale' end
  elseif op ~= 'invalidate' and stored[1] and not newer(version, stored[1]) then
    local refill = op == 'fill' and stored[1] == version and stored[4] ~= '1'
    if not refill then return 'stale' end
  end
  if op == 'fill' then op = 'upsert' end

  local first_index = k + 1 + s + h
  local last_key = first_index + z + g - 1

  -- Leave whatever the previous state occupied and this one does not. The common upsert keeps
  -- the same keys: equal JSON lists skip the decoding and the loops (and the meta rewrite).
  local same_keys = op == 'upsert' and stored[2] == new_keys
  local same_idx = op == 'upsert' and stored[3] == new_idx
  if stored[2] and not same_keys then
    local keep = kept(op, k + 1, first_index - 1)
    for _, key in ipairs(cjson.decode(stored[2])) do
      if not keep[key] then call('DEL', key) end
    end
  end
  if stored[3] and not same_idx then
    local keep = kept(op, first_index, last_key)
    for _, key in ipairs(cjson.decode(stored[3])) do
      if not keep[key] then call('ZREM', key, member) end
    end
  end

  if op ~= 'upsert' then
    for i = k + 1, first_index - 1 do call('DEL', KEYS[i]) end
    for i = first_index, last_key do call('ZREM', KEYS[i], member) end
  end
  if op == 'invalidate' then
    if stored[1] then call('HSET', meta, 'keys', '[]', 'idx', '[]') end
    return 'invalidated'
  end
  if op == 'purge' then
    local tombstone = ARGV[a + 11]
    if tombstone == '0' then
      call('DEL', meta)
      return 'deleted'
    end
    if stored[1] and newer(stored[1], tombstone) then tombstone = stored[1] end
    version = tombstone
  end
  if op ~= 'upsert' then
    call('DEL', meta)
    call('HSET', meta, 'v', version, 'd', '1', 'keys', '[]', 'idx', '[]')
    call('PEXPIRE', meta, ttl)
    return 'deleted'
  end

  local d, key = a + 11, k + 1
  for _ = 1, s do
    if ARGV[d + 1] == '0' then
      call('SET', KEYS[key], ARGV[d])
    else
      call('SET', KEYS[key], ARGV[d], 'PX', ARGV[d + 1])
    end
    d, key = d + 2, key + 1
  end
  for _ = 1, h do
    local n = tonumber(ARGV[d])
    -- Replace, not merge: a field that left the document leaves the hash. Overwritten in place
    -- (no free and rebuild per event); only a hash left with more fields than the n written,
    -- which is then stale, is rebuilt.
    if n > 0 then
      call('HSET', KEYS[key], unpack(ARGV, d + 1, d + 2 * n))
      if call('HLEN', KEYS[key]) > n then
        call('DEL', KEYS[key])
        call('HSET', KEYS[key], unpack(ARGV, d + 1, d + 2 * n))
      end
    else
      call('DEL', KEYS[key])
    end
    d, key = d + 1 + 2 * n, key + 1
  end
  -- A geo index is a sorted set scored by the point's geohash, which the caller computed exactly
  -- as GEOADD would: one ZADD for both kinds.
  for _ = 1, z + g do
    call('ZADD', KEYS[key], ARGV[d], member)
    d, key = d + 1, key + 1
  end
  if same_keys and same_idx and stored[4] == '0' then
    call('HSET', meta, 'v', version)
  else
    call('HSET', meta, 'v', version, 'd', '0', 'keys', new_keys, 'idx', new_idx)
    -- An upsert newer than a tombstone brings the entity back: its meta must not expire any more.
    if stored[4] == '1' then call('PERSIST', meta) end
  end
  return 'applied'
end

local guards = tonumber(ARGV[1])
for i = 1, 2 * guards do
  if (call('GET', KEYS[i]) or '') ~= ARGV[1 + i] then return { ok = 'generation' } end
end

local replies = {}
local k, a = 1 + 2 * guards, 3 + 2 * guards
for i = 1, tonumber(ARGV[2 + 2 * guards]) do
  -- Where the next record starts, whatever happens to this one.
  local next_k = k + 1 + ARGV[a + 4] + ARGV[a + 5] + ARGV[a + 6] + ARGV[a + 7]
  local next_a = a + 11 + ARGV[a + 8]
  local ok, reply = pcall(apply, k, a)
  if ok then
    replies[i] = reply
  else
    -- redis.call raises its error as a string (Redis 7.0) or as an error table (7.2+); Lua
    -- runtime errors are strings. Either way it becomes this record's error reply.
    if type(reply) == 'table' then reply = reply.err end
    replies[i] = redis.error_reply(tostring(reply))
  end
  k, a = next_k, next_a
end
return replies
