#!lua name=switchyard
-- switchyard's Redis function library. Gateways load it at start (FUNCTION
-- LOAD REPLACE); backends publish with
--   FCALL switchyard_publish 1 <channel> <payload> [idempotency key] [tags]
-- The gateway fills in the two settings below when it loads the library.

local VERSION = 11
local PREFIX = '@PREFIX@'      -- broker.prefix: pub/sub names are PREFIX:{channel}
local PUBLISH = '@PUBLISH@'    -- PUBLISH on one Redis, SPUBLISH on a Redis Cluster
local IDEMPOTENCY_MS = @IDEMPOTENCY_MS@  -- broker.idempotency_window

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
local function deliver(channel, envelope, key)
  local pubsub, meta, stream = names(channel)
  -- An idempotency key seen within the window: publish nothing, answer
  -- what the first publish answered. The key is in the channel's slot.
  local seen_key
  if key ~= nil and key ~= '' then
    seen_key = pubsub .. ':idem:' .. key
    local seen = redis.call('GET', seen_key)
    if seen then
      local epoch, offset = string.match(seen, '^(.-)\n(%d+)$')
      return {epoch or '', tonumber(offset or 0)}, 0
    end
  end
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
  local receivers = redis.call(PUBLISH, pubsub, envelope)
  if seen_key then
    redis.call('SET', seen_key, epoch .. '\n' .. offset, 'PX', IDEMPOTENCY_MS)
  end
  return {epoch, offset}, receivers
end

-- An idempotency key: none (absent or empty) or 1 to 64 bytes.
local function check_key(key)
  return key == nil or #key <= 64
end

-- Tags as a JSON object of strings, encoded as the Envelope's `tags` map
-- (field 8); the limits are the gateway's (MAX_TAGS and the sizes).
local function encode_tags(json)
  if json == nil or json == '' then return '' end
  local ok, tags = pcall(cjson.decode, json)
  if not ok or type(tags) ~= 'table' then return nil end
  local out, count = {}, 0
  for k, v in pairs(tags) do
    count = count + 1
    if type(k) ~= 'string' or type(v) ~= 'string' or #k == 0 or #k > 64 or #v > 256 or count > 32 then
      return nil
    end
    out[#out + 1] = bytes_field(8, bytes_field(1, k) .. bytes_field(2, v))
  end
  return table.concat(out)
end

-- FCALL switchyard_publish 1 <channel> <payload> [idempotency key] [tags]
-- The key may be empty when tags follow. An empty payload is refused, as a
-- client's publish without data is: it would reach JSON subscribers as a
-- null indistinguishable from a real one.
local function publish(keys, args)
  local channel, payload = keys[1], args[1]
  local tags = encode_tags(args[3])
  if payload == nil or not check_key(args[2]) or tags == nil then
    return redis.error_reply('ERR usage: FCALL switchyard_publish 1 <channel> <payload> '
      .. '[key of 0-64 bytes] [tags: a JSON object of at most 32 strings]')
  end
  if payload == '' then
    return redis.error_reply('ERR the payload must not be empty')
  end
  if not check_channel(channel) then
    return redis.error_reply('ERR invalid channel name')
  end
  local envelope = bytes_field(1, channel) .. bytes_field(2, payload) .. varint_field(5, now_us()) .. tags
  return (deliver(channel, envelope, args[2]))
end

-- FCALL switchyard_publish_envelope 1 <channel> <Envelope>: a gateway's
-- publish, encoded by the gateway.
local function publish_envelope(keys, args)
  if args[1] == nil or not check_channel(keys[1]) then
    return redis.error_reply('ERR usage: FCALL switchyard_publish_envelope 1 <channel> <envelope>')
  end
  return (deliver(keys[1], args[1]))
end

-- FCALL switchyard_publish_counted 1 <channel> <Envelope> [idempotency key]:
-- a gateway's publish that wants to know how many nodes received it
-- (receipts; 0 for a repeat of a key), or is idempotent:
-- {epoch, offset, nodes}.
local function publish_counted(keys, args)
  if args[1] == nil or not check_channel(keys[1]) or not check_key(args[2]) then
    return redis.error_reply('ERR usage: FCALL switchyard_publish_counted 1 <channel> <envelope> [key]')
  end
  local position, receivers = deliver(keys[1], args[1], args[2])
  return {position[1], position[2], receivers}
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
    -- Kept as the digits given: a Lua number would print 10^14 and above
    -- as 1e+14, which is no stream ID. An offset past the stream's top
    -- simply finds nothing (the caller sees it is past the position).
    local since = args[1]
    if not string.match(since, '^%d+$') or #since > 20 then
      return redis.error_reply('ERR since must be an offset or ""')
    end
    if #since == 20 and since > '18446744073709551614' then
      return {out[1], out[2]}
    end
    local entries = redis.call('XRANGE', stream, '(' .. since .. '-0', '+', 'COUNT', limit)
    for _, entry in ipairs(entries) do
      out[#out + 1] = entry[2][2]
    end
  end
  return out
end

-- FCALL switchyard_rebase 1 <channel> <epoch> [Envelope]
-- A node found that the channel's history went back in time under <epoch>
-- (a failover lost its tail, so offsets would be reused): if the channel
-- is still in <epoch>, start a new epoch with an empty stream, and publish
-- the Envelope (the publication that showed it) as the new epoch's first.
-- Several nodes may find the same regression: the first one moves the
-- channel, the others change nothing. Returns the channel's {epoch, offset}.
local function rebase(keys, args)
  local channel, old = keys[1], args[1]
  if old == nil or old == '' or not check_channel(channel) then
    return redis.error_reply('ERR usage: FCALL switchyard_rebase 1 <channel> <epoch> [envelope]')
  end
  local _, meta, stream = names(channel)
  local history = NAMESPACES[namespace_of(channel)]
  local state = redis.call('HMGET', meta, 'epoch', 'offset')
  if not history or state[1] ~= old then
    return {state[1] or '', tonumber(state[2] or 0)}
  end
  redis.call('DEL', meta)
  epoch_of(meta, stream, history)
  if args[2] ~= nil and args[2] ~= '' then
    return (deliver(channel, args[2]))
  end
  local now = redis.call('HMGET', meta, 'epoch', 'offset')
  return {now[1], tonumber(now[2])}
end

-- Presence: per channel, a hash of members (client id -> encoded
-- ClientInfo), a sorted set of the same client ids scored by when their
-- entry expires (ms), and, for user-level modes, a hash of each user's
-- count of entries. All keys are in the channel's slot.
--
-- Modes (the <mode> argument): '0' changes per client, reported to the
-- caller only; '1' per client, announced too; '2' per user (a user's first
-- entry and last one), announced too; '3' per user, reported only. Every
-- function returns {result, changes}, where changes is a flat list of
-- 'j' or 'l' followed by the encoded member: each change is reported to
-- exactly the one call that made or found it.
local function presence_names(channel)
  local base = PREFIX .. ':{' .. channel .. '}'
  return base, base .. ':presence', base .. ':presence:exp', base .. ':presence:users'
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Reads a varint at position i of s: the value and the next position.
local function read_varint(s, i)
  local n, scale = 0, 1
  while i <= #s do
    local byte = string.byte(s, i)
    n = n + (byte % 128) * scale
    i = i + 1
    if byte < 128 then return n, i end
    scale = scale * 128
  end
  return nil, i
end

-- The `user` (field 2) of an encoded ClientInfo; '' when it has none.
local function member_user(member)
  local i = 1
  while i <= #member do
    local tag, next_i = read_varint(member, i)
    if tag == nil then return '' end
    local field, wire = math.floor(tag / 8), tag % 8
    if wire == 2 then
      local len, start = read_varint(member, next_i)
      if len == nil then return '' end
      if field == 2 then return string.sub(member, start, start + len - 1) end
      i = start + len
    elseif wire == 0 then
      local _, after = read_varint(member, next_i)
      i = after
    else
      return ''
    end
  end
  return ''
end

-- A join (field 9) or leave (field 10) event to the channel's subscribers,
-- but the connection `except` names (field 14), if any.
local function announce(pubsub, channel, field, member, except)
  local skip = except and bytes_field(14, except) or ''
  redis.call(PUBLISH, pubsub, bytes_field(1, channel) .. varint_field(5, now_us()) .. bytes_field(field, member) .. skip)
end

local function per_user(mode)
  return mode == '2' or mode == '3'
end

-- Records a change: announced where the mode says, reported always. A
-- user's arrival is not announced to the connection that brought it
-- (`except`: it learns the members from its subscribe's answer).
local function change(changes, pubsub, channel, mode, joined, member, except)
  if mode == '1' or mode == '2' then
    announce(pubsub, channel, joined and 9 or 10, member, except)
  end
  changes[#changes + 1] = joined and 'j' or 'l'
  changes[#changes + 1] = member
end

-- The entry of `member` (of connection `client`) appeared: a change
-- unless (per user) its user was there already.
local function entered(changes, channel, mode, client, member)
  local pubsub, _, _, users = presence_names(channel)
  if per_user(mode) and redis.call('HINCRBY', users, member_user(member), 1) > 1 then
    return
  end
  change(changes, pubsub, channel, mode, true, member, per_user(mode) and client or nil)
end

-- The entry of `member` went: a change unless (per user) another entry of
-- its user is still there.
local function went(changes, channel, mode, member)
  local pubsub, _, _, users = presence_names(channel)
  if per_user(mode) then
    local user = member_user(member)
    if redis.call('HINCRBY', users, user, -1) > 0 then
      return
    end
    redis.call('HDEL', users, user)
  end
  change(changes, pubsub, channel, mode, false, member)
end

-- Removes the channel's expired entries, each a change.
local function sweep(channel, mode, changes)
  local _, members, expiry = presence_names(channel)
  local now = now_ms()
  local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, client in ipairs(expired) do
    local member = redis.call('HGET', members, client)
    if member then
      redis.call('HDEL', members, client)
      went(changes, channel, mode, member)
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  end
end

-- The keys outlive their entries (twice the TTL), so that an expired entry
-- is found and announced by a sweep rather than vanishing with its key.
local function keep_keys(channel, ttl)
  local _, members, expiry, users = presence_names(channel)
  for _, key in ipairs({members, expiry, users}) do
    if redis.call('PTTL', key) < 2 * ttl then
      redis.call('PEXPIRE', key, 2 * ttl)
    end
  end
end

local function presence_usage(name, rest)
  return redis.error_reply('ERR usage: FCALL ' .. name .. ' 1 <channel> ' .. rest)
end

local function check_mode(mode)
  return mode == '0' or mode == '1' or mode == '2' or mode == '3'
end

-- FCALL switchyard_presence_add 1 <channel> <ttl ms> <mode> <client> <member> [<client> <member> ...]
-- Adds or refreshes members until now + ttl: {added, changes}.
local function presence_add(keys, args)
  local channel, ttl, mode = keys[1], tonumber(args[1]), args[2]
  if not check_channel(channel) or ttl == nil or ttl <= 0 or not check_mode(mode) or #args < 4 or #args % 2 ~= 0 then
    return presence_usage('switchyard_presence_add', '<ttl ms> <mode 0-3> <client> <member> ...')
  end
  local changes = {}
  sweep(channel, mode, changes)
  local _, members, expiry = presence_names(channel)
  local expires = now_ms() + ttl
  for i = 3, #args, 2 do
    local client, member = args[i], args[i + 1]
    local new = redis.call('HSET', members, client, member)
    redis.call('ZADD', expiry, expires, client)
    if new == 1 then entered(changes, channel, mode, client, member) end
  end
  keep_keys(channel, ttl)
  return {(#args - 2) / 2, changes}
end

-- FCALL switchyard_presence_refresh 1 <channel> <ttl ms> <mode> <client> [<client> ...]
-- Extends the entries that are there until now + ttl: {the clients that
-- were not (their node adds them again if they are still there), changes}.
local function presence_refresh(keys, args)
  local channel, ttl, mode = keys[1], tonumber(args[1]), args[2]
  if not check_channel(channel) or ttl == nil or ttl <= 0 or not check_mode(mode) or #args < 3 then
    return presence_usage('switchyard_presence_refresh', '<ttl ms> <mode 0-3> <client> ...')
  end
  local changes = {}
  sweep(channel, mode, changes)
  local _, _, expiry = presence_names(channel)
  local expires = now_ms() + ttl
  local missing = {}
  for i = 3, #args do
    if redis.call('ZADD', expiry, 'XX', 'CH', expires, args[i]) == 0 and redis.call('ZSCORE', expiry, args[i]) == false then
      missing[#missing + 1] = args[i]
    end
  end
  keep_keys(channel, ttl)
  return {missing, changes}
end

-- FCALL switchyard_presence_remove 1 <channel> <client> <mode>: {removed, changes}.
local function presence_remove(keys, args)
  local channel, client, mode = keys[1], args[1], args[2]
  if not check_channel(channel) or client == nil or not check_mode(mode) then
    return presence_usage('switchyard_presence_remove', '<client> <mode 0-3>')
  end
  local _, members, expiry = presence_names(channel)
  local member = redis.call('HGET', members, client)
  local changes = {}
  if not member then return {0, changes} end
  redis.call('HDEL', members, client)
  redis.call('ZREM', expiry, client)
  went(changes, channel, mode, member)
  return {1, changes}
end

-- FCALL switchyard_presence_get 1 <channel> <mode>
-- The live members (encoded ClientInfo), after sweeping expired ones:
-- {members, changes}.
local function presence_get(keys, args)
  local channel, mode = keys[1], args[1]
  if not check_channel(channel) or not check_mode(mode) then
    return presence_usage('switchyard_presence_get', '<mode 0-3>')
  end
  local changes = {}
  sweep(channel, mode, changes)
  local _, members = presence_names(channel)
  return {redis.call('HVALS', members), changes}
end

-- FCALL switchyard_presence_unindex 1 <index key> <channel> <now ms>
-- Takes a channel a sweep found empty out of the presence index, unless a
-- node indexed it again since (its score moved past <now>).
local function presence_unindex(keys, args)
  local score = redis.call('ZSCORE', keys[1], args[1])
  if score and tonumber(score) <= tonumber(args[2]) then
    redis.call('ZREM', keys[1], args[1])
    return 1
  end
  return 0
end

-- User operations: a Control message (cluster.proto) on the control
-- channel, which every node listens to. Returns how many nodes got it.
local CONTROL = PREFIX .. ':control'

local function check_user(user)
  return user ~= nil and #user > 0 and #user <= 255
end

-- A UserChannel operation (Control field 1: subscribe, 2: unsubscribe).
local function user_channel_op(field, name, args)
  if not check_user(args[1]) or not check_channel(args[2]) then
    return redis.error_reply('ERR usage: FCALL ' .. name .. ' 0 <user> <channel>')
  end
  return redis.call('PUBLISH', CONTROL, bytes_field(field, bytes_field(1, args[1]) .. bytes_field(2, args[2])))
end

-- FCALL switchyard_subscribe_user 0 <user> <channel>
local function subscribe_user(_, args)
  return user_channel_op(1, 'switchyard_subscribe_user', args)
end

-- FCALL switchyard_unsubscribe_user 0 <user> <channel>
local function unsubscribe_user(_, args)
  return user_channel_op(2, 'switchyard_unsubscribe_user', args)
end

-- FCALL switchyard_disconnect_user 0 <user> [code] [reason]
local function disconnect_user(_, args)
  local code = tonumber(args[2] or '0')
  if not check_user(args[1]) or code == nil or code < 0 or code > 4999 or code ~= math.floor(code) then
    return redis.error_reply('ERR usage: FCALL switchyard_disconnect_user 0 <user> [code] [reason]')
  end
  local body = bytes_field(1, args[1]) .. varint_field(2, code)
  if args[3] then body = body .. bytes_field(3, args[3]) end
  return redis.call('PUBLISH', CONTROL, bytes_field(3, body))
end

-- FCALL switchyard_lease 1 <key> <holder> <ttl ms>: takes the lease for
-- <holder>, or renews it if <holder> has it. 1 if <holder> has it now.
local function lease(keys, args)
  local ttl = tonumber(args[2] or '')
  if args[1] == nil or args[1] == '' or ttl == nil or ttl < 1 then
    return redis.error_reply('ERR usage: FCALL switchyard_lease 1 <key> <holder> <ttl ms>')
  end
  local holder = redis.call('GET', keys[1])
  if holder and holder ~= args[1] then return 0 end
  redis.call('SET', keys[1], args[1], 'PX', ttl)
  return 1
end

-- FCALL switchyard_lease_release 1 <key> <holder>: gives the lease up if
-- <holder> has it.
local function lease_release(keys, args)
  if redis.call('GET', keys[1]) == args[1] then
    return redis.call('DEL', keys[1])
  end
  return 0
end

local function version()
  return VERSION
end

redis.register_function('switchyard_publish', publish)
redis.register_function('switchyard_publish_envelope', publish_envelope)
redis.register_function('switchyard_publish_counted', publish_counted)
redis.register_function('switchyard_history', history)
redis.register_function('switchyard_rebase', rebase)
redis.register_function('switchyard_presence_add', presence_add)
redis.register_function('switchyard_presence_refresh', presence_refresh)
redis.register_function('switchyard_presence_remove', presence_remove)
redis.register_function('switchyard_presence_get', presence_get)
redis.register_function('switchyard_presence_unindex', presence_unindex)
redis.register_function('switchyard_subscribe_user', subscribe_user)
redis.register_function('switchyard_unsubscribe_user', unsubscribe_user)
redis.register_function('switchyard_disconnect_user', disconnect_user)
redis.register_function('switchyard_lease', lease)
redis.register_function('switchyard_lease_release', lease_release)
redis.register_function{function_name = 'switchyard_version', callback = version, flags = {'no-writes'}}
