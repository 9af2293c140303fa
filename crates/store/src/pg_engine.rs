//! The key-value engine on PostgreSQL, shared by every replica of a service: one table of
//! (key, value) rows per service in key order (`bytea` compares bytewise, as sled does), and
//! one table of lock rows. A batch is one transaction; a lock is a row locked
//! `FOR UPDATE` by an open transaction, and the writes made under it commit in that same
//! transaction, so writers are serialised by the database, also behind a connection
//! pooler (no session state is kept between transactions).
//!
//! The stores above call the engine synchronously (sled's API is synchronous), so the
//! connections live on a runtime of their own and a call waits for its answer: a caller on
//! any runtime, even a single-threaded test runtime, never blocks the task that drives its
//! connection.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::engine::{Engine, Held, Op, Pair};
use crate::error::{Result, StoreError};

/// Connections reading at once per store; writers holding a lock come on top.
const READERS: usize = 8;
/// Idle connections kept per store.
const IDLE: usize = 4;
/// Rows fetched per round trip of a range scan.
const RANGE_BATCH: i64 = 256;
/// Rows per statement of a batch.
const WRITE_ROWS: usize = 5_000;
/// Serialises schema migrations of concurrently starting replicas (any constant the
/// database's other users do not take).
const MIGRATION_LOCK: i64 = 0x7072_6f6d_6f74_696f;

/// Schema versions, applied in order inside one transaction each start-up that finds them
/// missing. Never edit a released one: add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE installation_kv (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE installation_locks (name bytea PRIMARY KEY);
     CREATE TABLE package_kv (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE package_locks (name bytea PRIMARY KEY);",
)];

/// Whose tables an engine works on.
#[derive(Debug, Clone, Copy)]
pub enum Space {
    Installation,
    Package,
}

/// The statements of one space.
struct Sql {
    get: String,
    get_many: String,
    forward: String,
    forward_open: String,
    reverse: String,
    reverse_open: String,
    delete: String,
    upsert: String,
    lock_row: String,
    lock: String,
    size: String,
}

impl Sql {
    fn new(space: Space) -> Sql {
        let (data, locks) = match space {
            Space::Installation => ("installation_kv", "installation_locks"),
            Space::Package => ("package_kv", "package_locks"),
        };
        Sql {
            get: format!("SELECT v FROM {data} WHERE k = $1"),
            get_many: format!("SELECT k, v FROM {data} WHERE k = ANY($1)"),
            forward: format!("SELECT k, v FROM {data} WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3"),
            forward_open: format!("SELECT k, v FROM {data} WHERE k >= $1 ORDER BY k LIMIT $2"),
            reverse: format!("SELECT k, v FROM {data} WHERE k >= $1 AND k < $2 ORDER BY k DESC LIMIT $3"),
            reverse_open: format!("SELECT k, v FROM {data} WHERE k >= $1 ORDER BY k DESC LIMIT $2"),
            delete: format!("DELETE FROM {data} WHERE k = ANY($1)"),
            upsert: format!(
                "INSERT INTO {data} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
            ),
            lock_row: format!("INSERT INTO {locks} (name) VALUES ($1) ON CONFLICT DO NOTHING"),
            lock: format!("SELECT name FROM {locks} WHERE name = $1 FOR UPDATE"),
            size: format!("SELECT pg_total_relation_size('{data}'::regclass)"),
        }
    }
}

/// The runtime every database connection of the process is driven on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("promotion-db")
            .enable_all()
            .build()
            .expect("the database runtime starts")
    })
}

/// Runs `work` on the database runtime and waits for its answer. Never called from that
/// runtime's own threads.
pub(crate) fn block<T: Send + 'static>(work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| StoreError::unavailable("the database task ended without an answer"))?
}

/// Runs `work` on the database runtime, for async callers.
async fn on_runtime<T: Send + 'static>(work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    runtime().spawn(work).await.map_err(|e| StoreError::unavailable(format!("database task failed: {e}")))?
}

/// One connection with the statements it has prepared.
pub(crate) struct Conn {
    client: tokio_postgres::Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    async fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(crate) async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query(&statement, params).await?)
    }

    pub(crate) async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.statement(sql).await?;
        Ok(self.client.execute(&statement, params).await?)
    }

    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql).await?)
    }
}

/// Opens connections on demand and keeps a few idle ones. A connection that failed is
/// dropped, never reused: closing it rolls back whatever it had open.
pub(crate) struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Conn>>,
    readers: Semaphore,
}

impl Pool {
    pub(crate) fn new(url: &str) -> Result<Pool> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::engine(format!("storage.database_url does not parse: {e}")))?;
        if config.get_connect_timeout().is_none() {
            // A database that is down answers UNAVAILABLE promptly instead of hanging calls.
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("promotion");
        }
        Ok(Pool { config, idle: Mutex::default(), readers: Semaphore::new(READERS) })
    }

    /// A connection of its own for the caller (idle or new). Runs on the database runtime.
    pub(crate) async fn take(&self) -> Result<Conn> {
        loop {
            let idle = self.idle.lock().expect("pool lock is never poisoned").pop();
            match idle {
                Some(conn) if !conn.client.is_closed() => return Ok(conn),
                Some(_) => continue,
                None => break,
            }
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "database connection ended");
            }
        });
        Ok(Conn { client, statements: HashMap::new() })
    }

    /// Returns a connection that finished its work cleanly.
    pub(crate) fn give(&self, conn: Conn) {
        let mut idle = self.idle.lock().expect("pool lock is never poisoned");
        if !conn.client.is_closed() && idle.len() < IDLE {
            idle.push(conn);
        }
    }

    /// One statement outside any transaction, on a reader's connection.
    async fn read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let _reader = self.readers.acquire().await.map_err(|_| StoreError::unavailable("the pool is closed"))?;
        let mut conn = self.take().await?;
        let rows = conn.query(sql, params).await?;
        self.give(conn);
        Ok(rows)
    }
}

struct Inner {
    pool: Pool,
    sql: Sql,
}

pub struct PgEngine {
    inner: Arc<Inner>,
}

impl PgEngine {
    /// Connects to `url` and brings the schema up to date (concurrent starts of several
    /// replicas are safe: migrations run one at a time under a transaction-scoped lock).
    pub fn open(url: &str, space: Space) -> Result<PgEngine> {
        let inner = Arc::new(Inner { pool: Pool::new(url)?, sql: Sql::new(space) });
        let migrating = inner.clone();
        block(async move {
            let mut conn = migrating.pool.take().await?;
            migrate(&mut conn).await?;
            migrating.pool.give(conn);
            Ok(())
        })?;
        Ok(PgEngine { inner })
    }
}

async fn migrate(conn: &mut Conn) -> Result<()> {
    conn.batch("BEGIN").await?;
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    conn.batch(
        "CREATE TABLE IF NOT EXISTS promotion_migrations \
         (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: Vec<i32> =
        conn.query("SELECT version FROM promotion_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        conn.batch(sql).await?;
        conn.execute("INSERT INTO promotion_migrations (version) VALUES ($1)", &[version]).await?;
        tracing::info!(version, "applied a database schema migration");
    }
    conn.batch("COMMIT").await
}

/// Writes the net effect of `ops` (the last operation on a key wins, as if applied in
/// order) inside the connection's open transaction.
async fn write_ops(conn: &mut Conn, sql: &Sql, ops: Vec<Op>) -> Result<()> {
    let last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = ops.into_iter().collect();
    let mut deletes = Vec::new();
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for (k, v) in last {
        match v {
            Some(v) => {
                keys.push(k);
                values.push(v);
            }
            None => deletes.push(k),
        }
    }
    for chunk in deletes.chunks(WRITE_ROWS) {
        conn.execute(&sql.delete, &[&chunk]).await?;
    }
    for (k, v) in keys.chunks(WRITE_ROWS).zip(values.chunks(WRITE_ROWS)) {
        conn.execute(&sql.upsert, &[&k, &v]).await?;
    }
    Ok(())
}

/// A lock row held by the open transaction of `conn`.
struct PgHeld {
    inner: Arc<Inner>,
    conn: Option<Conn>,
}

impl Held for PgHeld {
    fn apply(mut self: Box<Self>, ops: Vec<Op>) -> Result<()> {
        let mut conn = self.conn.take().expect("a held lock has its connection until applied");
        let inner = self.inner.clone();
        block(async move {
            write_ops(&mut conn, &inner.sql, ops).await?;
            conn.batch("COMMIT").await?;
            inner.pool.give(conn);
            Ok(())
        })
    }
}

impl Drop for PgHeld {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let inner = self.inner.clone();
            runtime().spawn(async move {
                if conn.batch("ROLLBACK").await.is_ok() {
                    inner.pool.give(conn);
                }
            });
        }
    }
}

/// A key range read in batches of [`RANGE_BATCH`] rows, resuming after the last key seen.
struct Range {
    inner: Arc<Inner>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    reverse: bool,
    buffered: VecDeque<Pair>,
    exhausted: bool,
}

impl Range {
    fn fetch(&mut self) -> Result<()> {
        let inner = self.inner.clone();
        let (start, end, reverse) = (self.start.clone(), self.end.clone(), self.reverse);
        let rows: Vec<Pair> = block(async move {
            let sql = &inner.sql;
            let rows = match (&end, reverse) {
                (Some(end), false) => inner.pool.read(&sql.forward, &[&start, end, &RANGE_BATCH]).await?,
                (None, false) => inner.pool.read(&sql.forward_open, &[&start, &RANGE_BATCH]).await?,
                (Some(end), true) => inner.pool.read(&sql.reverse, &[&start, end, &RANGE_BATCH]).await?,
                (None, true) => inner.pool.read(&sql.reverse_open, &[&start, &RANGE_BATCH]).await?,
            };
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        self.exhausted = (rows.len() as i64) < RANGE_BATCH;
        if let Some((last, _)) = rows.last() {
            if self.reverse {
                self.end = Some(last.clone());
            } else {
                // The smallest key after `last`.
                self.start = [last.as_slice(), &[0]].concat();
            }
        }
        self.buffered.extend(rows);
        Ok(())
    }
}

impl Iterator for Range {
    type Item = Result<Pair>;

    fn next(&mut self) -> Option<Result<Pair>> {
        if self.buffered.is_empty() && !self.exhausted {
            if let Err(e) = self.fetch() {
                self.exhausted = true;
                return Some(Err(e));
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

#[async_trait]
impl Engine for PgEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (inner, key) = (self.inner.clone(), key.to_vec());
        block(async move { Ok(inner.pool.read(&inner.sql.get, &[&key]).await?.first().map(|r| r.get(0))) })
    }

    fn get_many(&self, keys: Vec<Vec<u8>>) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let inner = self.inner.clone();
        block(async move {
            let mut found = HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(WRITE_ROWS) {
                for row in inner.pool.read(&inner.sql.get_many, &[&chunk]).await? {
                    found.insert(row.get(0), row.get(1));
                }
            }
            Ok(found)
        })
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, reverse: bool) -> Box<dyn Iterator<Item = Result<Pair>> + '_> {
        if end.is_some_and(|end| end <= start) {
            return Box::new(std::iter::empty());
        }
        Box::new(Range {
            inner: self.inner.clone(),
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            reverse,
            buffered: VecDeque::new(),
            exhausted: false,
        })
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let inner = self.inner.clone();
        block(async move {
            let mut conn = inner.pool.take().await?;
            conn.batch("BEGIN").await?;
            write_ops(&mut conn, &inner.sql, ops).await?;
            conn.batch("COMMIT").await?;
            inner.pool.give(conn);
            Ok(())
        })
    }

    fn flush(&self) -> Result<()> {
        // Every batch was committed (and so made durable by the database) before `apply`
        // returned.
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        let inner = self.inner.clone();
        block(async move { Ok(inner.pool.read(&inner.sql.size, &[]).await?.first().map_or(0, |r| r.get::<_, i64>(0))) })
            .map_or(0, |n| n.max(0) as u64)
    }

    async fn hold(&self, name: &[u8]) -> Result<Option<Box<dyn Held>>> {
        let (inner, name) = (self.inner.clone(), name.to_vec());
        let conn = on_runtime(async move {
            let mut conn = inner.pool.take().await?;
            conn.batch("BEGIN").await?;
            // The row exists from the first lock on; FOR UPDATE then waits for its holder.
            conn.execute(&inner.sql.lock_row, &[&name]).await?;
            conn.query(&inner.sql.lock, &[&name]).await?;
            Ok(conn)
        })
        .await?;
        Ok(Some(Box::new(PgHeld { inner: self.inner.clone(), conn: Some(conn) })))
    }

    fn unbounded_batches(&self) -> bool {
        true
    }
}
