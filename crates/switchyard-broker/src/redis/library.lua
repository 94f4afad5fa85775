#!lua name=switchyard
-- switchyard's Redis function library. Gateways load it at start (FUNCTION
-- LOAD REPLACE); backends publish with
--   FCALL switchyard_publish 1 <channel> <payload>
-- The gateway fills in the two settings below when it loads the library.

local VERSION = 3
local PREFIX = '@PREFIX@'      -- broker.prefix: pub/sub names are PREFIX:{channel}
local PUBLISH = '@PUBLISH@'    -- PUBLISH on one Redis, SPUBLISH on a Redis Cluster

-- Namespaces that keep history: publications kept, and how long (ms) the
-- publications and the channel's position live after the last publish.
local NAMESPACES = {
@NAMESPACES@
}

-- Protobuf encoding of the few Envelope fields the library writes
-- (proto/switchyard/v1/cluster.proto). Numbers stay below 2^53, which Lua's
-- doubles hold exactly.
local function varint(n)
  local out = {}
  repeat
    local byte = n % 128
    n = (n - byte) / 128
    if n > 0 then byte = byte + 128 end
    out[#out + 1] = string.char(byte)
  until n == 0
  return table.concat(out)
end

local function bytes_field(number, value)
  return varint(number * 8 + 2) .. varint(#value) .. value
end

local function varint_field(number, value)
  return varint(number * 8) .. varint(value)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function check_channel(channel)
  if channel == nil or #channel == 0 or #channel > 255 or not string.match(channel, '^[%w_%-:%.@/=,#]+$') then
    return false
  end
  return true
end

local function namespace_of(channel)
  return string.match(channel, '^([^:]*):') or 'default'
end

-- A channel's names share its hash tag, and so its slot.
local function names(channel)
  local base = PREFIX .. ':{' .. channel .. '}'
  return base, base .. ':meta', base .. ':stream'
end

-- The channel's epoch, a new one if it has none (never published, or its
-- position expired); a new epoch starts an empty stream.
local function epoch_of(meta, stream, history)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    local t = redis.call('TIME')
    epoch = string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
    redis.call('PEXPIRE', meta, history.meta_ttl_ms)
  end
  return epoch
end

-- Publishes an encoded Envelope to every node listening to the channel.
-- In a namespace with history, first gives it the channel's next offset
-- (and the epoch, a new one when the position was lost) and appends it to
-- the channel's stream, all in this one atomic call.
-- Returns {epoch, offset}: the stream position, ("", 0) without history.
local function deliver(channel, envelope)
  local pubsub, meta, stream = names(channel)
  local history = NAMESPACES[namespace_of(channel)]
  local epoch, offset = '', 0
  if history then
    epoch = epoch_of(meta, stream, history)
    offset = redis.call('HINCRBY', meta, 'offset', 1)
    -- Protobuf: fields appended later win, so these set epoch and offset.
    envelope = envelope .. bytes_field(3, epoch) .. varint_field(4, offset)
    redis.call('XADD', stream, 'MAXLEN', history.size, offset .. '-0', 'e', envelope)
    redis.call('PEXPIRE', stream, history.ttl_ms)
    redis.call('PEXPIRE', meta, history.meta_ttl_ms)
  end
  redis.call(PUBLISH, pubsub, envelope)
  return {epoch, offset}
end

-- FCALL switchyard_publish 1 <channel> <payload>
local function publish(keys, args)
  local channel, payload = keys[1], args[1]
  if payload == nil then
    return redis.error_reply('ERR usage: FCALL switchyard_publish 1 <channel> <payload>')
  end
  if not check_channel(channel) then
    return redis.error_reply('ERR invalid channel name')
  end
  local envelope = bytes_field(1, channel) .. bytes_field(2, payload) .. varint_field(5, now_us())
  return deliver(channel, envelope)
end

-- FCALL switchyard_publish_envelope 1 <channel> <Envelope>: a gateway's
-- publish, encoded by the gateway.
local function publish_envelope(keys, args)
  if args[1] == nil or not check_channel(keys[1]) then
    return redis.error_reply('ERR usage: FCALL switchyard_publish_envelope 1 <channel> <envelope>')
  end
  return deliver(keys[1], args[1])
end

-- FCALL switchyard_history 1 <channel> <since> <limit>
-- Envelopes after offset <since> (the newest <limit> when <since> is ''),
-- oldest first, after the channel's position: {epoch, offset, envelope...}.
-- A channel with history gets its epoch here if it has none yet, so that
-- a subscriber's position always names one.
local function history(keys, args)
  if not check_channel(keys[1]) or tonumber(args[2]) == nil then
    return redis.error_reply('ERR usage: FCALL switchyard_history 1 <channel> <since offset or ""> <limit>')
  end
  local _, meta, stream = names(keys[1])
  local settings = NAMESPACES[namespace_of(keys[1])]
  if settings then
    epoch_of(meta, stream, settings)
  end
  local state = redis.call('HMGET', meta, 'epoch', 'offset')
  local out = {state[1] or '', tonumber(state[2] or 0)}
  local limit = tonumber(args[2])
  if args[1] == '' then
    local entries = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', limit)
    for i = #entries, 1, -1 do
      out[#out + 1] = entries[i][2][2]
    end
  else
    local since = tonumber(args[1])
    if since == nil then
      return redis.error_reply('ERR since must be an offset or ""')
    end
    local entries = redis.call('XRANGE', stream, '(' .. since .. '-0', '+', 'COUNT', limit)
    for _, entry in ipairs(entries) do
      out[#out + 1] = entry[2][2]
    end
  end
  return out
end

local function version()
  return VERSION
end

redis.register_function('switchyard_publish', publish)
redis.register_function('switchyard_publish_envelope', publish_envelope)
redis.register_function('switchyard_history', history)
redis.register_function{function_name = 'switchyard_version', callback = version, flags = {'no-writes'}}
