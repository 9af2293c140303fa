//! Throwaway PostgreSQL schemas for tests: each test store gets a schema of its own (a
//! unique name, dropped afterwards) on the server named by `PROMOTION_TEST_DATABASE_URL`
//! (default: the local server every machine of the project runs). Tests share the server
//! with other test runs, so nothing here touches anything it did not create.
use std::io::Write;
use std::sync::Once;

use crate::error::Result;
use crate::pg_engine::{block, Pool};

/// The server tests use when `PROMOTION_TEST_DATABASE_URL` names none.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct ScratchSchema {
    base: String,
    schema: String,
}

impl ScratchSchema {
    /// A new, empty schema. Without a reachable server it is None, and the run says so
    /// once; under `CI=true` (where the server is part of the machine) that is a failure.
    pub fn create() -> Option<ScratchSchema> {
        let base = std::env::var("PROMOTION_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.into());
        let schema = format!("promotion_test_{}", uuid::Uuid::new_v4().simple());
        match run(&base, format!("CREATE SCHEMA {schema}")) {
            Ok(()) => Some(ScratchSchema { base, schema }),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("the PostgreSQL suite needs the server at {base} (CI=true): {e}")
            }
            Err(e) => {
                static SAID: Once = Once::new();
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                SAID.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "\n*** PostgreSQL suite NOT RUN: no server at {base} ({e}); \
                         set PROMOTION_TEST_DATABASE_URL to run it ***\n"
                    );
                });
                None
            }
        }
    }

    /// The database URL of a store that keeps its tables in this schema.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-csearch_path%3D{}", self.base, self.schema)
    }

    pub fn name(&self) -> &str {
        &self.schema
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if let Err(e) = run(&self.base, format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)) {
            eprintln!("could not drop test schema {}: {e}", self.schema);
        }
    }
}

fn run(url: &str, sql: String) -> Result<()> {
    let pool = Pool::new(url)?;
    block(async move { pool.take().await?.batch(&sql).await })
}
