#!lua name=switchyard
-- switchyard's Redis function library. Gateways load it at start (FUNCTION
-- LOAD REPLACE); backends publish with
--   FCALL switchyard_publish 1 <channel> <payload>
-- The gateway fills in the two settings below when it loads the library.

local VERSION = 1
local PREFIX = '@PREFIX@'      -- broker.prefix: pub/sub names are PREFIX:{channel}
local PUBLISH = '@PUBLISH@'    -- PUBLISH on one Redis, SPUBLISH on a Redis Cluster

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

-- Publishes an encoded Envelope to every node listening to the channel.
-- Returns {epoch, offset}: the stream position, ("", 0) without history.
local function deliver(channel, envelope)
  redis.call(PUBLISH, PREFIX .. ':{' .. channel .. '}', envelope)
  return {'', 0}
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

local function version()
  return VERSION
end

redis.register_function('switchyard_publish', publish)
redis.register_function('switchyard_publish_envelope', publish_envelope)
redis.register_function{function_name = 'switchyard_version', callback = version, flags = {'no-writes'}}
