//! # The Redis baseline: check-and-decrement as one Lua script per operation
//!
//! A single, unreplicated Redis (SPEC section 5). Every operation is ONE `EVALSHA` of a Lua
//! script; Redis runs a script alone, so each script is atomic: the check of every line and the
//! holds it takes are one indivisible step, which makes the outcome of any concurrent load equal
//! to some serial order of the requests (no oversell).
//!
//! ## Data (all in the database named by the URL; [`RedisBaseline::reset`] is `FLUSHDB`)
//!
//! - `st:<len(sku)>:<sku><location>`: a hash per balance, `o` = on_hand, `r` = reserved (a
//!   missing field is 0). The length prefix makes the key unambiguous for any pair of ids.
//! - `stock:keys`: the set of balance keys (for [`RedisBaseline::totals`]).
//! - `h:<id>`: a hold. Live: a hash with `!s` = `live`, `!d` = deadline (ms since the epoch),
//!   and one field per balance key (never starting with `!`) = the summed quantity held there.
//!   Finished: just `!s` = `released` | `committed` | `expired`: a tombstone, so that reusing the
//!   id is `AlreadyExists` like in stockd.
//! - `holds:due`: a sorted set of live hold keys scored by deadline.
//!
//! ## Expiry (the choice)
//!
//! A **sorted set of deadlines swept inside every script**: each script first reads the
//! server's clock (`TIME`; Redis >= 5 replicates scripts by effects, so that is allowed), pops
//! every hold with `deadline <= now` from `holds:due`, gives its units back (`r -= qty`) and leaves
//! its tombstone, then does its work. So `reserved` only ever counts live holds when a check or a
//! read looks at it - exact, not eventually. When nothing is due the sweep costs one
//! `ZRANGEBYSCORE` that returns nothing, O(log n). Each hold is swept once, so the sweep is
//! amortised O(lines) per hold; a mass expiry is paid by the next script, all at once (Redis is
//! single-threaded: a very large one stalls every client for that time, as it would in
//! production).
//!
//! The scripts touch keys they are not given in `KEYS` (the swept holds and their balances):
//! fine on a single Redis, which is what the baseline is; not cluster-safe.
//!
//! Numbers: Lua numbers are doubles, exact below 2^53; every stored quantity is at most
//! `QTY_MAX` (10^15), and the scripts format integers with `%d` before handing them to
//! `HINCRBY`. [`RedisBaseline::totals`] sums in Lua too: exact while the sums stay below 2^53.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Script};

use super::{
    check_id, check_reserve, check_stock_row, insufficient, BaselineError, Line, ReserveOutcome,
};
use crate::target::Key;

/// The sorted set of live holds by deadline.
const DUE_KEY: &str = "holds:due";
/// The set of every balance key.
const STOCK_KEYS: &str = "stock:keys";
/// Rows per pipeline in [`RedisBaseline::load_stock`].
const LOAD_CHUNK: usize = 1000;
/// How long a command may wait for its answer: generous, a load test measures rather than
/// fails (the crate's default is 500 ms).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The clock and the sweep, prepended to every script.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(x)
  return string.format('%d', x)
end
local function sweep(due_key, now)
  local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', int(now))
  if #due == 0 then return end
  for _, h in ipairs(due) do
    local f = redis.call('HGETALL', h)
    for j = 1, #f, 2 do
      if string.byte(f[j], 1) ~= 33 then
        redis.call('HINCRBY', f[j], 'r', '-' .. f[j + 1])
      end
    end
    redis.call('DEL', h)
    redis.call('HSET', h, '!s', 'expired')
  end
  redis.call('ZREMRANGEBYSCORE', due_key, '-inf', int(now))
end
"#;

/// KEYS: hold key, due set, then one balance key per line in request order.
/// ARGV: ttl_ms, then one quantity per line.
/// Returns {0} granted, {1, line index (0-based), ats} insufficient, {2} already exists.
const RESERVE: &str = r#"
local now = now_ms()
sweep(KEYS[2], now)
if redis.call('EXISTS', KEYS[1]) == 1 then return {2} end
local ats, taken, order = {}, {}, {}
for i = 3, #KEYS do
  local k = KEYS[i]
  if ats[k] == nil then
    local v = redis.call('HMGET', k, 'o', 'r')
    local a = (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)
    if a < 0 then a = 0 end
    ats[k] = a
    taken[k] = 0
    order[#order + 1] = k
  end
  taken[k] = taken[k] + tonumber(ARGV[i - 1])
  if taken[k] > ats[k] then return {1, i - 3, ats[k]} end
end
local deadline = int(now + tonumber(ARGV[1]))
local fields = {'!s', 'live', '!d', deadline}
for _, k in ipairs(order) do
  local q = int(taken[k])
  redis.call('HINCRBY', k, 'r', q)
  fields[#fields + 1] = k
  fields[#fields + 1] = q
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], deadline, KEYS[1])
return {0}
"#;

/// KEYS: hold key, due set. ARGV: `released` or `committed`.
/// Returns 1 when the hold was live (and is now finished), else 0.
const FINISH: &str = r#"
local now = now_ms()
sweep(KEYS[2], now)
if redis.call('HGET', KEYS[1], '!s') ~= 'live' then return 0 end
local commit = ARGV[1] == 'committed'
local f = redis.call('HGETALL', KEYS[1])
for j = 1, #f, 2 do
  if string.byte(f[j], 1) ~= 33 then
    redis.call('HINCRBY', f[j], 'r', '-' .. f[j + 1])
    if commit then redis.call('HINCRBY', f[j], 'o', '-' .. f[j + 1]) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '!s', ARGV[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"#;

/// KEYS: due set, then balance keys. Returns the ATS of each balance key.
const AVAILABLE: &str = r#"
sweep(KEYS[1], now_ms())
local out = {}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'o', 'r')
  local a = (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)
  if a < 0 then a = 0 end
  out[#out + 1] = a
end
return out
"#;

/// KEYS: due set, stock key set. Returns {sum on_hand, sum reserved}.
const TOTALS: &str = r#"
sweep(KEYS[1], now_ms())
local o, r = 0, 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local v = redis.call('HMGET', k, 'o', 'r')
  o = o + (tonumber(v[1]) or 0)
  r = r + (tonumber(v[2]) or 0)
end
return {o, r}
"#;

/// The Redis key of the balance of `sku` at `location`.
fn stock_key(sku: &str, location: &str) -> String {
    format!("st:{}:{}{}", sku.len(), sku, location)
}

/// The Redis key of hold `id`.
fn hold_key(id: &str) -> String {
    format!("h:{id}")
}

fn redis_err(what: &str) -> impl Fn(::redis::RedisError) -> BaselineError + '_ {
    move |e| BaselineError(format!("redis {what}: {e}"))
}

/// The scripts, hashed once.
struct Scripts {
    reserve: Script,
    finish: Script,
    available: Script,
    totals: Script,
}

struct Inner {
    conns: Vec<MultiplexedConnection>,
    next: AtomicUsize,
    scripts: Scripts,
}

/// The Redis baseline: cheap to clone (shares its connections).
///
/// It holds `connections` multiplexed connections and spreads calls over them round-robin;
/// each connection pipelines every call in flight on it, so a handful is plenty (Redis runs
/// commands on one thread anyway).
#[derive(Clone)]
pub struct RedisBaseline {
    inner: Arc<Inner>,
}

impl RedisBaseline {
    /// Connects `connections` (at least 1) multiplexed connections to `url`
    /// (`redis://host:port/db`) and loads the scripts.
    pub async fn connect(url: &str, connections: usize) -> Result<Self, BaselineError> {
        let client = Client::open(url).map_err(redis_err("url"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut conns = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            conns.push(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(redis_err("connect"))?,
            );
        }
        let scripts = Scripts {
            reserve: Script::new(&format!("{PRELUDE}{RESERVE}")),
            finish: Script::new(&format!("{PRELUDE}{FINISH}")),
            available: Script::new(&format!("{PRELUDE}{AVAILABLE}")),
            totals: Script::new(&format!("{PRELUDE}{TOTALS}")),
        };
        // Load them now so that the first calls are plain EVALSHAs (a NOSCRIPT later, e.g.
        // after SCRIPT FLUSH, still falls back to loading).
        if let Some(conn) = conns.first_mut() {
            for s in [
                &scripts.reserve,
                &scripts.finish,
                &scripts.available,
                &scripts.totals,
            ] {
                s.prepare_invoke()
                    .load_async(conn)
                    .await
                    .map_err(redis_err("SCRIPT LOAD"))?;
            }
        }
        Ok(RedisBaseline {
            inner: Arc::new(Inner {
                conns,
                next: AtomicUsize::new(0),
                scripts,
            }),
        })
    }

    /// The next connection, round-robin (a clone of a multiplexed connection is a handle).
    fn conn(&self) -> MultiplexedConnection {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.conns.len();
        self.inner.conns[i].clone()
    }

    /// Empties the state: `FLUSHDB` of the database in the URL (give the baseline a database
    /// of its own).
    pub async fn reset(&self) -> Result<(), BaselineError> {
        ::redis::cmd("FLUSHDB")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err("FLUSHDB"))
    }

    /// Sets `on_hand` of each `(sku, location, on_hand)` (a count; `reserved` is kept), creating
    /// balances as needed; pipelined by chunks. A later row for the same balance wins.
    pub async fn load_stock(&self, rows: &[(String, String, i64)]) -> Result<(), BaselineError> {
        for (sku, location, on_hand) in rows {
            check_stock_row(sku, location, *on_hand)?;
        }
        let mut conn = self.conn();
        for chunk in rows.chunks(LOAD_CHUNK) {
            let mut pipe = ::redis::pipe();
            let mut keys = Vec::with_capacity(chunk.len());
            for (sku, location, on_hand) in chunk {
                let key = stock_key(sku, location);
                pipe.hset(&key, "o", *on_hand).ignore();
                keys.push(key);
            }
            pipe.sadd(STOCK_KEYS, keys).ignore();
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("load_stock"))?;
        }
        Ok(())
    }

    /// Holds every line or none, for `ttl_ms` (see the module docs): one `EVALSHA`.
    pub async fn reserve(
        &self,
        id: &str,
        lines: &[Line],
        ttl_ms: u64,
    ) -> Result<ReserveOutcome, BaselineError> {
        check_reserve(id, lines, ttl_ms)?;
        let mut inv = self.inner.scripts.reserve.prepare_invoke();
        inv.key(hold_key(id)).key(DUE_KEY).arg(ttl_ms);
        for line in lines {
            inv.key(stock_key(&line.sku, &line.location)).arg(line.qty);
        }
        let answer: Vec<i64> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err("reserve"))?;
        match answer.as_slice() {
            [0] => Ok(ReserveOutcome::Granted),
            [2] => Ok(ReserveOutcome::AlreadyExists),
            [1, line, available] => {
                let i = usize::try_from(*line)
                    .map_err(|_| BaselineError(format!("reserve script named line {line}")))?;
                Ok(insufficient(lines, i, *available))
            }
            other => Err(BaselineError(format!("reserve script answered {other:?}"))),
        }
    }

    /// Releases live hold `id`: its units are available again. `false` if `id` is not a live
    /// hold (unknown, expired, released or committed).
    pub async fn release(&self, id: &str) -> Result<bool, BaselineError> {
        self.finish(id, "released").await
    }

    /// Commits live hold `id` (place + fulfil): its units leave `reserved` and `on_hand`.
    /// `false` if `id` is not a live hold.
    pub async fn commit(&self, id: &str) -> Result<bool, BaselineError> {
        self.finish(id, "committed").await
    }

    async fn finish(&self, id: &str, state: &str) -> Result<bool, BaselineError> {
        check_id("hold id", id)?;
        let done: i64 = self
            .inner
            .scripts
            .finish
            .key(hold_key(id))
            .key(DUE_KEY)
            .arg(state)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err(state))?;
        Ok(done == 1)
    }

    /// ATS of each `(sku, location)`, in order (0 for a balance never loaded).
    pub async fn available(&self, keys: &[Key]) -> Result<Vec<i64>, BaselineError> {
        let mut inv = self.inner.scripts.available.key(DUE_KEY);
        for (sku, location) in keys {
            inv.key(stock_key(sku.as_str(), location.as_str()));
        }
        let ats: Vec<i64> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err("available"))?;
        if ats.len() != keys.len() {
            return Err(BaselineError(format!(
                "available script answered {} values for {} keys",
                ats.len(),
                keys.len()
            )));
        }
        Ok(ats)
    }

    /// `(sum of on_hand, sum of reserved)` over every balance, live holds only: for checks
    /// (it reads every balance in one script).
    pub async fn totals(&self) -> Result<(i64, i64), BaselineError> {
        let t: Vec<i64> = self
            .inner
            .scripts
            .totals
            .key(DUE_KEY)
            .key(STOCK_KEYS)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err("totals"))?;
        match t.as_slice() {
            [on_hand, reserved] => Ok((*on_hand, *reserved)),
            other => Err(BaselineError(format!("totals script answered {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous() {
        assert_ne!(stock_key("ab", "c"), stock_key("a", "bc"));
        assert_eq!(stock_key("sku-1", "wh1"), "st:5:sku-1wh1");
        assert_eq!(hold_key("r1"), "h:r1");
        // Hold fields that are balance keys never start with '!' (the state fields do).
        assert!(!stock_key("x", "y").starts_with('!'));
    }
}
