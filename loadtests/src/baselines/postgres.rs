//! # The PostgreSQL baseline: one transaction per operation, conditional updates
//!
//! ## Tables (created if missing by [`PostgresBaseline::connect`]; emptied by `reset`)
//!
//! - `bl_stock(sku, location, on_hand, reserved)`, primary key `(sku, location)`.
//! - `bl_holds(id, expires_at, state, skus, locations)`: one row per hold ever made (`state`
//!   `live` | `released` | `committed`; a `live` hold past `expires_at` is expired), so a reused
//!   id is `AlreadyExists`. `skus`/`locations` list its balances in lock order.
//! - `bl_hold_lines(hold_id, sku, location, qty, expires_at)`: the summed quantity a hold still
//!   counts in `bl_stock.reserved`. **Invariant:** `reserved` of a balance = the sum of its
//!   `bl_hold_lines` rows. A row leaves that table exactly once (`DELETE ... RETURNING`), and
//!   the same statement takes its quantity out of `reserved`.
//!
//! ## Reserve: one READ COMMITTED transaction, 2 round trips
//!
//! Pipelined in one go: `BEGIN`; insert the hold row (`ON CONFLICT (id) DO NOTHING`: 0 rows
//! = `AlreadyExists`); then, for each balance of the summed demand in `(sku, location)` byte
//! order, one statement that sweeps that balance's expired hold lines and takes the units only
//! if they fit:
//!
//! ```sql
//! WITH gone AS (DELETE FROM bl_hold_lines
//!               WHERE sku = $1 AND location = $2 AND expires_at <= now() RETURNING qty),
//!      freed AS (SELECT coalesce(sum(qty), 0)::bigint AS q FROM gone)
//! UPDATE bl_stock s SET reserved = s.reserved - freed.q + $3 FROM freed
//! WHERE s.sku = $1 AND s.location = $2 AND s.on_hand - s.reserved + freed.q >= $3
//! ```
//!
//! then the hold lines (`ON CONFLICT DO NOTHING`: they clash only when the id is taken, and
//! then the transaction rolls back anyway). Then `COMMIT` if the hold row was new and every
//! update hit its row, else `ROLLBACK` (all or nothing). For `Insufficient`, the ATS of the
//! request's balances is read right after the rollback and the line is named by the engine's
//! rule (module [`super`]); `available` is that fresh ATS.
//!
//! **Why READ COMMITTED is enough.** Every check is inside the `UPDATE`'s `WHERE`, on a row the
//! `UPDATE` locks: when the row was changed by a transaction that committed meanwhile,
//! PostgreSQL re-evaluates the `WHERE` on the newest version of the row before updating (the
//! "EvalPlanQual" recheck), so the check always sees the latest committed `reserved`, and holds
//! the row lock until commit. Two reservations can never both take the last unit; no read is
//! ever reused for a later write, so no stronger isolation is needed (SERIALIZABLE would only add
//! aborts). Rows are locked in one global order - per balance in `(sku, location)` byte order,
//! first its hold lines, then its stock row - by reserve, release and commit alike, so they do
//! not deadlock each other; a deadlock or serialization failure that happens anyway (e.g. two
//! sweeps of the same expired lines) is retried, up to [`ATTEMPTS`] times.
//!
//! ## Expiry
//!
//! Holds are **counted only when not expired, and swept in the reserving transaction**: reads
//! (`available`, `totals`) subtract the hold lines past `expires_at` from `reserved`; a reserve
//! first deletes the expired lines of the balances it touches and gives their units back in the
//! same statement as its check (above). Lines of balances no reserve touches stay until one
//! does, invisible to reads. `release`/`commit` answer `false` for a hold past `expires_at`.
//! "Now" is `now()`, the start of the transaction, on the server's clock. One small race, on
//! the safe side: a hold line committed after a reserving statement took its snapshot is not
//! swept by it even if already expired (TTLs of a few ms); the reserve may then see less ATS than
//! it could, never more.
//!
//! ## Release / commit: 2 round trips
//!
//! `BEGIN` + `UPDATE bl_holds SET state = ... WHERE id = $1 AND state = 'live' AND expires_at >
//! now() RETURNING skus, locations` (0 rows: `ROLLBACK`, `false`); then, per balance in order,
//! `DELETE` its hold line and subtract what was deleted from `reserved` (and `on_hand` for
//! commit), pipelined with `COMMIT`.
//!
//! Durability is the server's: the tables are ordinary (logged) tables; see
//! `scripts/baselines.sh` for the `synchronous_commit` setting.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::{
    check_id, check_reserve, check_stock_row, first_short, insufficient, summed, BaselineError,
    Line, ReserveOutcome,
};
use crate::target::Key;

/// Attempts of one operation when PostgreSQL aborts it with a deadlock or serialization
/// failure.
pub const ATTEMPTS: usize = 5;
/// Rows per statement in [`PostgresBaseline::load_stock`].
const LOAD_CHUNK: usize = 10_000;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = r#"
BEGIN;
SELECT pg_advisory_xact_lock(5343254);
CREATE TABLE IF NOT EXISTS bl_stock (
    sku text COLLATE "C" NOT NULL,
    location text COLLATE "C" NOT NULL,
    on_hand bigint NOT NULL,
    reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (sku, location)
);
CREATE TABLE IF NOT EXISTS bl_holds (
    id text COLLATE "C" PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    state text NOT NULL,
    skus text[] NOT NULL,
    locations text[] NOT NULL
);
CREATE TABLE IF NOT EXISTS bl_hold_lines (
    hold_id text COLLATE "C" NOT NULL,
    sku text COLLATE "C" NOT NULL,
    location text COLLATE "C" NOT NULL,
    qty bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (hold_id, sku, location)
);
CREATE INDEX IF NOT EXISTS bl_hold_lines_due ON bl_hold_lines (sku, location, expires_at);
COMMIT;
"#;

const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
const COMMIT: &str = "COMMIT";
const ROLLBACK: &str = "ROLLBACK";
const INSERT_HOLD: &str = "INSERT INTO bl_holds (id, expires_at, state, skus, locations) \
     VALUES ($1, now() + $2::int8 * interval '1 millisecond', 'live', $3, $4) \
     ON CONFLICT (id) DO NOTHING";
const RESERVE_LINE: &str = "WITH gone AS (DELETE FROM bl_hold_lines \
         WHERE sku = $1 AND location = $2 AND expires_at <= now() RETURNING qty), \
     freed AS (SELECT coalesce(sum(qty), 0)::bigint AS q FROM gone) \
     UPDATE bl_stock s SET reserved = s.reserved - freed.q + $3 FROM freed \
     WHERE s.sku = $1 AND s.location = $2 AND s.on_hand - s.reserved + freed.q >= $3";
const INSERT_LINES: &str = "INSERT INTO bl_hold_lines (hold_id, sku, location, qty, expires_at) \
     SELECT $1, l.sku, l.location, l.qty, now() + $5::int8 * interval '1 millisecond' \
     FROM unnest($2::text[], $3::text[], $4::int8[]) AS l(sku, location, qty) \
     ON CONFLICT DO NOTHING";
const FINISH_HOLD: &str = "UPDATE bl_holds SET state = $2 \
     WHERE id = $1 AND state = 'live' AND expires_at > now() RETURNING skus, locations";
const RELEASE_LINE: &str = "WITH gone AS (DELETE FROM bl_hold_lines \
         WHERE hold_id = $1 AND sku = $2 AND location = $3 RETURNING qty), \
     freed AS (SELECT coalesce(sum(qty), 0)::bigint AS q FROM gone) \
     UPDATE bl_stock s SET reserved = s.reserved - freed.q FROM freed \
     WHERE s.sku = $2 AND s.location = $3";
const COMMIT_LINE: &str = "WITH gone AS (DELETE FROM bl_hold_lines \
         WHERE hold_id = $1 AND sku = $2 AND location = $3 RETURNING qty), \
     freed AS (SELECT coalesce(sum(qty), 0)::bigint AS q FROM gone) \
     UPDATE bl_stock s SET reserved = s.reserved - freed.q, on_hand = s.on_hand - freed.q \
     FROM freed WHERE s.sku = $2 AND s.location = $3";
const AVAILABLE: &str = "SELECT k.i, greatest(0, s.on_hand - s.reserved + coalesce(( \
         SELECT sum(h.qty) FROM bl_hold_lines h \
         WHERE h.sku = s.sku AND h.location = s.location AND h.expires_at <= now()), 0))::bigint \
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(sku, location, i) \
     JOIN bl_stock s ON s.sku = k.sku AND s.location = k.location";
const TOTALS: &str = "SELECT coalesce(sum(on_hand), 0)::bigint, \
     (coalesce(sum(reserved), 0) - coalesce(( \
         SELECT sum(qty) FROM bl_hold_lines WHERE expires_at <= now()), 0))::bigint \
     FROM bl_stock";
const LOAD: &str = "INSERT INTO bl_stock (sku, location, on_hand) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) \
     ON CONFLICT (sku, location) DO UPDATE SET on_hand = excluded.on_hand";
const RESET: &str = "TRUNCATE bl_stock, bl_holds, bl_hold_lines";

/// The prepared statements of one connection.
struct Statements {
    begin: Statement,
    commit: Statement,
    rollback: Statement,
    insert_hold: Statement,
    reserve_line: Statement,
    insert_lines: Statement,
    finish_hold: Statement,
    release_line: Statement,
    commit_line: Statement,
    available: Statement,
    totals: Statement,
    load: Statement,
    reset: Statement,
}

/// One connection and its statements.
struct Conn {
    client: Client,
    st: Statements,
}

/// A pool of at most `size` connections: a semaphore for the slots, a stack of idle ones.
/// A connection that is closed, or dropped in the middle of a transaction (a cancelled call),
/// is not returned; its slot opens a new one when next needed.
struct Pool {
    config: Config,
    idle: Mutex<Vec<Conn>>,
    slots: Semaphore,
}

/// A connection on loan from the pool.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// A transaction may be open: do not give the connection back to the pool.
    in_txn: bool,
    _slot: SemaphorePermit<'a>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !self.in_txn && !conn.client.is_closed() {
                self.pool.idle_list().push(conn);
            }
        }
    }
}

impl Lease<'_> {
    fn conn(&self) -> Result<&Conn, BaselineError> {
        self.conn
            .as_ref()
            .ok_or_else(|| BaselineError("postgres: connection already returned".into()))
    }
}

impl Pool {
    fn idle_list(&self) -> MutexGuard<'_, Vec<Conn>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn open(&self) -> Result<Conn, BaselineError> {
        let client = connect_client(&self.config).await?;
        let st = prepare(&client).await?;
        Ok(Conn { client, st })
    }

    async fn get(&self) -> Result<Lease<'_>, BaselineError> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| BaselineError("postgres: pool closed".into()))?;
        let idle = self.idle_list().pop();
        let conn = match idle {
            Some(c) if !c.client.is_closed() => c,
            _ => self.open().await?,
        };
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            in_txn: false,
            _slot: slot,
        })
    }
}

async fn connect_client(config: &Config) -> Result<Client, BaselineError> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_err("connect"))?;
    tokio::spawn(async move {
        // The connection task ends when the client is dropped or the socket fails; a failed
        // socket shows up as errors (and `is_closed`) on the client.
        let _ = connection.await;
    });
    Ok(client)
}

async fn prepare(client: &Client) -> Result<Statements, BaselineError> {
    let p = |sql: &'static str| async move { client.prepare(sql).await.map_err(pg_err(sql)) };
    Ok(Statements {
        begin: p(BEGIN).await?,
        commit: p(COMMIT).await?,
        rollback: p(ROLLBACK).await?,
        insert_hold: p(INSERT_HOLD).await?,
        reserve_line: p(RESERVE_LINE).await?,
        insert_lines: p(INSERT_LINES).await?,
        finish_hold: p(FINISH_HOLD).await?,
        release_line: p(RELEASE_LINE).await?,
        commit_line: p(COMMIT_LINE).await?,
        available: p(AVAILABLE).await?,
        totals: p(TOTALS).await?,
        load: p(LOAD).await?,
        reset: p(RESET).await?,
    })
}

fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> BaselineError + '_ {
    move |e| {
        let detail = e
            .as_db_error()
            .map(|d| format!("{} ({})", d.message(), d.code().code()))
            .unwrap_or_else(|| e.to_string());
        BaselineError(format!("postgres {what}: {detail}"))
    }
}

/// Whether PostgreSQL aborted the transaction in a way that a retry fixes.
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// The first error among `results`, if any.
fn first_err<T>(
    results: impl IntoIterator<Item = Result<T, tokio_postgres::Error>>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    results.into_iter().collect()
}

/// One attempt's end: an answer, or a PostgreSQL error (retried when [`retryable`]).
type Attempt<T> = Result<T, tokio_postgres::Error>;

/// The PostgreSQL baseline: cheap to clone (shares its pool).
#[derive(Clone)]
pub struct PostgresBaseline {
    pool: std::sync::Arc<Pool>,
}

impl PostgresBaseline {
    /// Connects a pool of `connections` (at least 1) connections to `url`
    /// (`postgres://user:password@host:port/db`), creates the tables if missing and prepares
    /// the statements. All connections are opened now, so a bad URL fails here.
    pub async fn connect(url: &str, connections: usize) -> Result<Self, BaselineError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| BaselineError(format!("postgres url: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("stockd-baseline");
        let n = connections.max(1);
        let first = connect_client(&config).await?;
        first
            .batch_execute(SCHEMA)
            .await
            .map_err(pg_err("create tables"))?;
        let st = prepare(&first).await?;
        let mut idle = vec![Conn { client: first, st }];
        let pool = Pool {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(n),
        };
        for _ in 1..n {
            idle.push(pool.open().await?);
        }
        *pool.idle_list() = idle;
        Ok(PostgresBaseline {
            pool: std::sync::Arc::new(pool),
        })
    }

    /// Empties the state (`TRUNCATE` of the baseline's tables).
    pub async fn reset(&self) -> Result<(), BaselineError> {
        let lease = self.pool.get().await?;
        let c = lease.conn()?;
        c.client
            .execute(&c.st.reset, &[])
            .await
            .map_err(pg_err("reset"))?;
        Ok(())
    }

    /// Sets `on_hand` of each `(sku, location, on_hand)` (a count; `reserved` is kept), creating
    /// balances as needed, by chunks of one statement each. A later row for the same balance
    /// wins.
    pub async fn load_stock(&self, rows: &[(String, String, i64)]) -> Result<(), BaselineError> {
        for (sku, location, on_hand) in rows {
            check_stock_row(sku, location, *on_hand)?;
        }
        // One upsert may not touch a row twice: keep the last row of each balance.
        let mut last = std::collections::HashMap::with_capacity(rows.len());
        for (i, (sku, location, _)) in rows.iter().enumerate() {
            last.insert((sku.as_str(), location.as_str()), i);
        }
        let rows: Vec<&(String, String, i64)> = rows
            .iter()
            .enumerate()
            .filter(|(i, (s, l, _))| last.get(&(s.as_str(), l.as_str())) == Some(i))
            .map(|(_, r)| r)
            .collect();
        let lease = self.pool.get().await?;
        let c = lease.conn()?;
        for chunk in rows.chunks(LOAD_CHUNK) {
            let skus: Vec<&str> = chunk.iter().map(|r| r.0.as_str()).collect();
            let locs: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
            let qtys: Vec<i64> = chunk.iter().map(|r| r.2).collect();
            c.client
                .execute(&c.st.load, &[&skus, &locs, &qtys])
                .await
                .map_err(pg_err("load_stock"))?;
        }
        Ok(())
    }

    /// Holds every line or none, for `ttl_ms`, in one transaction (see the module docs).
    pub async fn reserve(
        &self,
        id: &str,
        lines: &[Line],
        ttl_ms: u64,
    ) -> Result<ReserveOutcome, BaselineError> {
        check_reserve(id, lines, ttl_ms)?;
        let demand = summed(lines);
        // check_reserve bounds ttl_ms by TTL_MS_MAX, far below i64::MAX.
        let ttl = i64::try_from(ttl_ms).map_err(|_| BaselineError::invalid("ttl_ms"))?;
        let mut lease = self.pool.get().await?;
        for attempt in 1..=ATTEMPTS {
            match self
                .try_reserve(&mut lease, id, lines, &demand, ttl)
                .await?
            {
                Ok(outcome) => return Ok(outcome),
                Err(e) if retryable(&e) && attempt < ATTEMPTS => continue,
                Err(e) => return Err(pg_err("reserve")(e)),
            }
        }
        Err(BaselineError("postgres reserve: out of attempts".into()))
    }

    async fn try_reserve(
        &self,
        lease: &mut Lease<'_>,
        id: &str,
        lines: &[Line],
        demand: &[(&str, &str, i64)],
        ttl: i64,
    ) -> Result<Attempt<ReserveOutcome>, BaselineError> {
        let skus: Vec<&str> = demand.iter().map(|d| d.0).collect();
        let locs: Vec<&str> = demand.iter().map(|d| d.1).collect();
        let qtys: Vec<i64> = demand.iter().map(|d| d.2).collect();
        let params: Vec<[&(dyn ToSql + Sync); 3]> = demand
            .iter()
            .map(|(s, l, q)| [s as _, l as _, q as _])
            .collect();
        lease.in_txn = true;
        let c = lease.conn()?;
        let (client, st) = (&c.client, &c.st);
        let hold_params: [&(dyn ToSql + Sync); 4] = [&id, &ttl, &skus, &locs];
        let lines_params: [&(dyn ToSql + Sync); 5] = [&id, &skus, &locs, &qtys, &ttl];
        // Round trip 1: everything, pipelined (futures polled together are sent in order).
        let (begin, hold, updates, inserted) = futures_util::join!(
            client.execute(&st.begin, &[]),
            client.execute(&st.insert_hold, &hold_params),
            join_all(params.iter().map(|p| client.execute(&st.reserve_line, p))),
            client.execute(&st.insert_lines, &lines_params),
        );
        let checked = begin
            .and(hold)
            .and_then(|hold| Ok((hold, first_err(updates)?)))
            .and_then(|(hold, updates)| inserted.map(|_| (hold, updates)));
        // Round trip 2: the end of the transaction.
        let (hold, updates) = match checked {
            Ok((hold, updates)) if hold == 1 && updates.iter().all(|&n| n == 1) => {
                let done = client.execute(&st.commit, &[]).await;
                lease.in_txn = false;
                return Ok(done.map(|_| ReserveOutcome::Granted));
            }
            Ok(found) => found,
            Err(e) => {
                client
                    .execute(&st.rollback, &[])
                    .await
                    .map_err(pg_err("rollback"))?;
                lease.in_txn = false;
                return Ok(Err(e));
            }
        };
        if hold != 1 {
            client
                .execute(&st.rollback, &[])
                .await
                .map_err(pg_err("rollback"))?;
            lease.in_txn = false;
            return Ok(Ok(ReserveOutcome::AlreadyExists));
        }
        // Insufficient: roll back and, pipelined with it, read the ATS to name the line.
        let ats_params: [&(dyn ToSql + Sync); 2] = [&skus, &locs];
        let (rolled_back, ats) = futures_util::join!(
            client.execute(&st.rollback, &[]),
            client.query(&st.available, &ats_params),
        );
        rolled_back.map_err(pg_err("rollback"))?;
        lease.in_txn = false;
        let rows = ats.map_err(pg_err("available"))?;
        Ok(Ok(shortfall(lines, demand, &updates, rows)?))
    }

    /// Releases live hold `id`: its units are available again. `false` if `id` is not a live
    /// hold (unknown, expired, released or committed).
    pub async fn release(&self, id: &str) -> Result<bool, BaselineError> {
        self.finish(id, false).await
    }

    /// Commits live hold `id` (place + fulfil): its units leave `reserved` and `on_hand`.
    /// `false` if `id` is not a live hold.
    pub async fn commit(&self, id: &str) -> Result<bool, BaselineError> {
        self.finish(id, true).await
    }

    async fn finish(&self, id: &str, commit: bool) -> Result<bool, BaselineError> {
        check_id("hold id", id)?;
        let what = if commit { "commit" } else { "release" };
        let mut lease = self.pool.get().await?;
        for attempt in 1..=ATTEMPTS {
            match self.try_finish(&mut lease, id, commit).await? {
                Ok(done) => return Ok(done),
                Err(e) if retryable(&e) && attempt < ATTEMPTS => continue,
                Err(e) => return Err(pg_err(what)(e)),
            }
        }
        Err(BaselineError(format!("postgres {what}: out of attempts")))
    }

    async fn try_finish(
        &self,
        lease: &mut Lease<'_>,
        id: &str,
        commit: bool,
    ) -> Result<Attempt<bool>, BaselineError> {
        let state = if commit { "committed" } else { "released" };
        lease.in_txn = true;
        let c = lease.conn()?;
        let (client, st) = (&c.client, &c.st);
        let hold_params: [&(dyn ToSql + Sync); 2] = [&id, &state];
        let (begin, hold) = futures_util::join!(
            client.execute(&st.begin, &[]),
            client.query_opt(&st.finish_hold, &hold_params),
        );
        let keys = match begin.and(hold) {
            Ok(Some(row)) => {
                let skus: Result<Vec<String>, _> = row.try_get(0);
                let locs: Result<Vec<String>, _> = row.try_get(1);
                skus.and_then(|s| Ok((s, locs?)))
            }
            Ok(None) => {
                client
                    .execute(&st.rollback, &[])
                    .await
                    .map_err(pg_err("rollback"))?;
                lease.in_txn = false;
                return Ok(Ok(false));
            }
            Err(e) => Err(e),
        };
        let (skus, locs) = match keys {
            Ok(k) => k,
            Err(e) => {
                client
                    .execute(&st.rollback, &[])
                    .await
                    .map_err(pg_err("rollback"))?;
                lease.in_txn = false;
                return Ok(Err(e));
            }
        };
        let line = if commit {
            &st.commit_line
        } else {
            &st.release_line
        };
        let params: Vec<[&(dyn ToSql + Sync); 3]> = skus
            .iter()
            .zip(&locs)
            .map(|(s, l)| [&id as _, s as _, l as _])
            .collect();
        // Per balance in lock order, then COMMIT (which rolls back if any of them failed).
        let (lines_done, committed) = futures_util::join!(
            join_all(params.iter().map(|p| client.execute(line, p))),
            client.execute(&st.commit, &[]),
        );
        committed.map_err(pg_err("commit"))?;
        lease.in_txn = false;
        Ok(first_err(lines_done).map(|_| true))
    }

    /// ATS of each `(sku, location)`, in order (0 for a balance never loaded); expired holds do
    /// not count.
    pub async fn available(&self, keys: &[Key]) -> Result<Vec<i64>, BaselineError> {
        let skus: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let locs: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let lease = self.pool.get().await?;
        let c = lease.conn()?;
        let rows = c
            .client
            .query(&c.st.available, &[&skus, &locs])
            .await
            .map_err(pg_err("available"))?;
        let mut out = vec![0; keys.len()];
        for row in rows {
            let i: i64 = row.try_get(0).map_err(pg_err("available"))?;
            let a: i64 = row.try_get(1).map_err(pg_err("available"))?;
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = a;
            }
        }
        Ok(out)
    }

    /// `(sum of on_hand, sum of reserved)` over every balance, live holds only: for checks.
    pub async fn totals(&self) -> Result<(i64, i64), BaselineError> {
        let lease = self.pool.get().await?;
        let c = lease.conn()?;
        let row = c
            .client
            .query_one(&c.st.totals, &[])
            .await
            .map_err(pg_err("totals"))?;
        let on_hand: i64 = row.try_get(0).map_err(pg_err("totals"))?;
        let reserved: i64 = row.try_get(1).map_err(pg_err("totals"))?;
        Ok((on_hand, reserved))
    }
}

/// The line a refused reservation names, from the availability rows read after the rollback
/// (`(line number, available)`, 1-based in `demand` order) and each balance update's row count.
fn shortfall(
    lines: &[Line],
    demand: &[(&str, &str, i64)],
    updates: &[u64],
    rows: Vec<tokio_postgres::Row>,
) -> Result<ReserveOutcome, BaselineError> {
    let mut by_key = std::collections::HashMap::with_capacity(demand.len());
    for row in rows {
        let i: i64 = row.try_get(0).map_err(pg_err("available"))?;
        let a: i64 = row.try_get(1).map_err(pg_err("available"))?;
        if let Some(d) = usize::try_from(i - 1).ok().and_then(|i| demand.get(i)) {
            by_key.insert((d.0, d.1), a);
        }
    }
    let ats_of = |s: &str, l: &str| by_key.get(&(s, l)).copied().unwrap_or(0);
    if let Some((i, a)) = first_short(lines, ats_of) {
        return Ok(insufficient(lines, i, a));
    }
    // Units came back between the failed check and the read: name the balance whose
    // update failed, with what is there now.
    let short = demand
        .iter()
        .zip(updates)
        .find(|(_, &n)| n == 0)
        .map(|(d, _)| (d.0, d.1));
    let i = short
        .and_then(|(s, l)| lines.iter().position(|x| x.sku == s && x.location == l))
        .unwrap_or(0);
    let a = short.map_or(0, |(s, l)| ats_of(s, l));
    Ok(insufficient(lines, i, a))
}
