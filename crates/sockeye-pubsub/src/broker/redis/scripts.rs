//! The Lua scripts that keep history and presence consistent (one script
//! per operation, run atomically in the topic's slot), their arguments, and
//! the decoding of their replies.

use std::time::Duration;

use redis::{Script, Value};

use crate::error::Error;
use crate::topic::History;

/// One script per operation.
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) history: Script,
    pub(super) join: Script,
    pub(super) leave: Script,
    pub(super) presence: Script,
}

const NOW_MS: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

impl Scripts {
    pub(super) fn new() -> Self {
        // KEYS: meta, stream. ARGV: channel, data, size, ttl ms, meta ttl ms,
        // new epoch, publish command.
        let publish = format!(
            "{NOW_MS}{}",
            r"local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], top .. '-0', 't', now, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call(ARGV[7], ARGV[1], 'p ' .. top .. ' ' .. epoch .. ' ' .. ARGV[2])
return {top, epoch}"
        );
        // KEYS: meta, stream. ARGV: since offset ('' for none), since epoch,
        // ttl ms, new epoch, meta ttl ms. Returns {epoch, top, complete,
        // offset1, data1, ...}: never a partial list.
        let history = format!(
            "{NOW_MS}{}",
            r"local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('HSETNX', KEYS[1], 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
if ARGV[1] == '' then return {epoch, top, 1} end
local since = tonumber(ARGV[1])
if ARGV[2] ~= epoch or since > top then return {epoch, top, 0} end
if since == top then return {epoch, top, 1} end
local oldest = now - tonumber(ARGV[3])
local entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')
local out = {epoch, top, 1}
local expect = since + 1
for _, e in ipairs(entries) do
  local id = tonumber(string.match(e[1], '^(%d+)'))
  local f = e[2]
  if id ~= expect or tonumber(f[2]) < oldest then return {epoch, top, 0} end
  table.insert(out, id)
  table.insert(out, f[4])
  expect = expect + 1
end
if expect ~= top + 1 then return {epoch, top, 0} end
return out"
        );
        // KEYS: members, expiry. ARGV: id, member JSON, ttl ms, channel,
        // publish command. Announces only a new member.
        let join = format!(
            "{NOW_MS}{}",
            r"local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
if added == 1 then redis.call(ARGV[5], ARGV[4], 'j ' .. ARGV[2]) end
return added"
        );
        // KEYS: members, expiry. ARGV: id, member JSON, channel, command.
        let leave = r"local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 1 then redis.call(ARGV[4], ARGV[3], 'l ' .. ARGV[2]) end
return removed";
        // KEYS: members, expiry. ARGV: channel, command. Expired members
        // (their node died) are removed and announced as leaving.
        let presence = format!(
            "{NOW_MS}{}",
            r"local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  local json = redis.call('HGET', KEYS[1], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if json then redis.call(ARGV[2], ARGV[1], 'l ' .. json) end
end
return redis.call('HVALS', KEYS[1])"
        );
        Self {
            publish: Script::new(&publish),
            history: Script::new(&history),
            join: Script::new(&join),
            leave: Script::new(leave),
            presence: Script::new(&presence),
        }
    }
}

/// A reply value as a number.
pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// A reply value as text.
pub(super) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A reply of the wrong shape.
pub(super) fn unexpected(what: &str) -> Error {
    Error::Broker(format!("redis: unexpected reply to {what}"))
}

/// A duration as Redis takes it: whole milliseconds, at least one.
pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long a topic's offset counter and epoch (`P:{T}:meta`) last.
pub(super) fn meta_ttl(history: History) -> u64 {
    // The counter outlives the stream by a day, so a quiet topic keeps
    // its epoch and a client that saw everything still recovers.
    duration_ms(history.ttl) + 86_400_000
}
