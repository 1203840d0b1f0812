"""The Lua scripts of the store: each write's atomic step on the server.

Loaded by `webapp.storage.Store` (``register_script``); what each one is given (KEYS, ARGV)
and answers is written above it. Every script's KEYS share one hash tag, the key bucket of
the sensor or group they concern (`webapp.storage.keys`), so each runs on one hash slot and
stays atomic on a Redis Cluster too; the "registries" and logs they touch are that bucket's.
"""

# KEYS: readings, fence hash, the set of stored writes (ids), the registry of this kind of
# series (edge groups or plain sensors) and the other kind's.
# ARGV: ts, value, epoch (-1: a plain reading), write id ("epoch:round" of an aggregate, or a
# request id), how long a write id is remembered (ms), the series' name.
#
# A name belongs to one kind of writer: a group's series refuses plain readings and a plain
# sensor's series refuses aggregates ('conflict'). Each registry is a sorted set of names
# scored by their last write (server time, ms), which finds idle series to forget.
#
# `#!lua` (no flags): Redis refuses the whole script up front when it is out of memory, so a
# full server answers an error (503) with nothing half-written. The hot path carries no labels:
# a missing series is answered 'missing' and created by CREATE, then the append runs again.
# Every write carries an id checked and kept in the same atomic step, so a re-sent script (a
# client retry, or redis-py's own retry after a timeout) is answered 'duplicate' with the
# first write's timestamp instead of storing the reading twice, checked before the fence: a
# deposed leader's retry of a round it did store is that round (answered 'duplicate', so the
# web tier judges it if its first answer was lost before the verdict), not a stale write. Ids
# are one sorted set per series (score: the stored timestamp), trimmed to how long they are
# remembered: the key count stays flat however many writes arrive.
APPEND = """#!lua
local series, fence, done, registry, others = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('ZSCORE', others, ARGV[6]) then return {'conflict', 0} end
if redis.call('EXISTS', series) == 0 then return {'missing', 0} end
local ts = tonumber(ARGV[1])
local epoch = tonumber(ARGV[3])
local member, remember = ARGV[4], tonumber(ARGV[5])
local prev = redis.call('ZSCORE', done, member)
if prev then
  -- Answered with a write, so WAIT covers the original too and a master without replicas
  -- refuses it: else a retry answered by a paused old master's unreplicated copy is
  -- acknowledged, then lost.
  if epoch >= 0 then redis.call('HINCRBY', fence, 'duplicates', 1) else redis.call('PEXPIRE', done, remember) end
  return {'duplicate', tonumber(prev)}
end
local newest = -1
if epoch >= 0 then
  newest = tonumber(redis.call('HGET', fence, 'epoch') or '-1')
  if epoch < newest then return {'stale', newest} end
end
local last = redis.call('TS.GET', series)
if #last == 2 and ts <= tonumber(last[1]) then ts = tonumber(last[1]) + 1 end
redis.call('TS.ADD', series, ts, ARGV[2])
if epoch >= 0 then
  if epoch > newest then redis.call('HSET', fence, 'epoch', epoch) end
  redis.call('HSET', fence, 'round', string.match(member, ':(%d+)$'), 'timestamp', ts)
end
redis.call('ZADD', done, ts, member)
redis.call('ZREMRANGEBYSCORE', done, '-inf', string.format('(%d', ts - remember))
redis.call('PEXPIRE', done, remember)
local now = redis.call('TIME')
redis.call('ZADD', registry, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[6])
return {'stored', ts}
"""

# KEYS: readings, avg_1m, avg_1h, this kind's registry, the other kind's. ARGV: retention,
# retention_1m, retention_1h, the name, this kind's quota of series in the bucket (its share of
# MAX_SENSORS; 0: none), label pairs.
# Creates the readings series and its compactions (TS.CREATERULE needs both ends to exist)
# and registers it, unless another writer already did, the name belongs to the other kind of
# writer ('conflict') or the quota is reached ('full'). Refused up front when out of memory.
CREATE = """#!lua
local series, avg1m, avg1h, registry, others = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('ZSCORE', others, ARGV[4]) then return 'conflict' end
if redis.call('EXISTS', series) == 1 then return 'exists' end
local quota = tonumber(ARGV[5])
if quota > 0 and redis.call('ZCARD', registry) >= quota then return 'full' end
local labels = {}
for i = 6, #ARGV do labels[#labels + 1] = ARGV[i] end
redis.call('TS.CREATE', series, 'RETENTION', ARGV[1], 'DUPLICATE_POLICY', 'BLOCK',
           'LABELS', 'kind', 'reading', unpack(labels))
redis.call('TS.CREATE', avg1m, 'RETENTION', ARGV[2], 'LABELS', 'kind', 'reading_avg', 'agg', '1m', unpack(labels))
redis.call('TS.CREATE', avg1h, 'RETENTION', ARGV[3], 'LABELS', 'kind', 'reading_avg', 'agg', '1h', unpack(labels))
redis.call('TS.CREATERULE', series, avg1m, 'AGGREGATION', 'avg', 60000)
redis.call('TS.CREATERULE', series, avg1h, 'AGGREGATION', 'avg', 3600000)
local now = redis.call('TIME')
redis.call('ZADD', registry, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[4])
return 'created'
"""

# KEYS: a registry, then every key of one idle series. ARGV: its name, the idle cutoff (ms).
# Deletes the series only if it is still idle: a writer that came back in between keeps it.
FORGET = """#!lua
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""

# The event log: one capped stream per kind (decisions never pushed out by sensor-fault
# noise) and, written in the same atomic step, a copy in the sensor's own capped stream of
# that kind (``?sensor=`` reads it instead of scanning every sensor's events), under the
# same id, expiring with the sensor's readings.
# KEYS: for each event, its kind's stream then the sensor's stream of that kind.
# ARGV: cap of a kind's stream (the bucket's share of EVENTS_MAX), cap of a sensor's stream,
# a sensor's stream lifetime (ms), then each event's JSON.
RECORD_EVENTS = """
local ids = {}
for i = 4, #ARGV do
  local log, own = KEYS[2 * (i - 3) - 1], KEYS[2 * (i - 3)]
  local id = redis.call('XADD', log, 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[i])
  local copy = redis.pcall('XADD', own, 'MAXLEN', '~', ARGV[2], id, 'event', ARGV[i])
  if type(copy) == 'table' and copy.err then  -- the kind's stream was reset: a fresh id
    redis.call('XADD', own, 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i])
  end
  redis.call('PEXPIRE', own, ARGV[3])
  ids[#ids + 1] = id
end
return ids
"""

# One decision, in one atomic step (`webapp.storage.state`): the sensor's reference level, its
# detectors' recent peaks (the hash replaced) and, at the reading's timestamp, each ballot's
# score and vote and the verdict, each series created with its labels on first write (the
# same commands a MULTI transaction of redis-py's TS.ADDs sent before, with a few arguments
# instead of every label of every series; docs/detection.md "Performance"). Refused up front
# when out of memory, as that transaction was. ON_DUPLICATE comes after LABELS, as redis-py
# put it: RedisTimeSeries applies it and also keeps it as a label (ON_DUPLICATE=last) of a
# series it creates, which this keeps so that new series look like the ones stored before.
# KEYS: level, peaks, verdict, then each ballot's score and vote series.
# ARGV: ts, retention (ms), the level ('' keeps it), the verdict's level (0-2), how many peak
# fields follow the labels (0: peaks kept), the labels app, ns, sensor (values), the peak
# fields and values, then each ballot's detector, score and vote.
RECORD_DECISION = """#!lua
local ts, retention, peak_fields = ARGV[1], ARGV[2], tonumber(ARGV[5])
local app, ns, sensor = ARGV[6], ARGV[7], ARGV[8]
if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[3], 'PX', retention) end
local at = 9
if peak_fields > 0 then
  local fields = {}
  for i = at, at + 2 * peak_fields - 1 do fields[#fields + 1] = ARGV[i] end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], unpack(fields))
  redis.call('PEXPIRE', KEYS[2], retention)
  at = at + 2 * peak_fields
end
local key = 4
while at <= #ARGV do
  local detector = ARGV[at]
  for _, kind in ipairs({'score', 'vote'}) do
    local value = kind == 'score' and ARGV[at + 1] or ARGV[at + 2]
    redis.call('TS.ADD', KEYS[key], ts, value, 'RETENTION', retention, 'LABELS', 'app', app, 'ns', ns,
               'sensor', sensor, 'detector', detector, 'kind', kind, 'ON_DUPLICATE', 'last')
    key = key + 1
  end
  at = at + 3
end
redis.call('TS.ADD', KEYS[3], ts, ARGV[4], 'RETENTION', retention, 'LABELS', 'app', app, 'ns', ns,
           'sensor', sensor, 'kind', 'verdict', 'ON_DUPLICATE', 'last')
return 'OK'
"""

# What judging the reading stored by one write needs (`webapp.storage.state`), read in the
# round trip of that write (`webapp.storage.ingest`), right after the append script: the
# write's timestamp (its id's score), the newest readings up to it, the reference level and
# the detectors' recent peaks. Read-only.
# KEYS: the set of stored writes (ids), readings, level, peaks. ARGV: the write's id, how many
# readings. Answers nil when the id is unknown (nothing was stored).
READ_WRITTEN = """#!lua flags=no-writes
local ts = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not ts then return false end
return {redis.call('TS.REVRANGE', KEYS[2], '-', ts, 'COUNT', ARGV[2]), redis.call('GET', KEYS[3]),
        redis.call('HGETALL', KEYS[4])}
"""
