//! The embedded store: one SQLite file in WAL mode with synchronous commits.

use crate::{Result, Store, StoreError, TaskQuery};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thunderhead_core::JobId;
use thunderhead_core::cost::{JobCostSample, Usage};
use thunderhead_core::job::{JobSpec, TaskState};
use thunderhead_core::persist::{JobProgress, JobRecord, NodeRecord, Op, Snapshot, TaskRow};
use thunderhead_core::template::Template;
use thunderhead_core::view::NodeLogEntry;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

/// `MIGRATIONS[v]` takes a database from schema version `v` to `v + 1`.
const MIGRATIONS: [&str; 6] = [SCHEMA_1, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5, SCHEMA_6];

/// What each job had cost, sampled at most once a minute, for cost charts.
const SCHEMA_6: &str = "
CREATE TABLE job_cost (job INTEGER NOT NULL, minute INTEGER NOT NULL, at INTEGER NOT NULL, cost TEXT NOT NULL, PRIMARY KEY (job, minute));
";

/// Users and the salted hashes of their API tokens; join tokens; issued node certificates.
const SCHEMA_5: &str = "
CREATE TABLE users (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE join_tokens (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE node_certs (fingerprint TEXT PRIMARY KEY, node TEXT NOT NULL, body TEXT NOT NULL);
";

/// Uploaded packages, by name and version.
const SCHEMA_4: &str = "
CREATE TABLE packages (name TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (name, version));
";

/// The proxies of started sets.
const SCHEMA_3: &str = "
CREATE TABLE proxies (name TEXT PRIMARY KEY, body TEXT NOT NULL);
";

/// Paid stretches of nodes and proxies.
const SCHEMA_2: &str = "
CREATE TABLE usage (id INTEGER PRIMARY KEY, ended INTEGER, body TEXT NOT NULL);
CREATE INDEX usage_by_end ON usage (ended);
";

const SCHEMA_1: &str = "
CREATE TABLE templates (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE series (prefix TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE nodes (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE node_log (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, at INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX node_log_by_node ON node_log (node, id);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, terminal INTEGER NOT NULL, body TEXT NOT NULL, progress TEXT NOT NULL);
CREATE TABLE tasks (
    job INTEGER NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL,
    losses INTEGER NOT NULL, node TEXT, exit_code INTEGER, message TEXT, started_at INTEGER,
    ended_at INTEGER, stdout TEXT, stderr TEXT,
    PRIMARY KEY (job, idx)
) WITHOUT ROWID;
CREATE INDEX tasks_active ON tasks (job) WHERE state IN ('Queued', 'Running');
";

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

/// Creates the database file with mode 0600 if it is missing, and gives an existing one and its
/// `-wal` and `-shm` files that mode: SQLite makes those two with the database file's mode, and
/// they hold the same data.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn engine(e: rusqlite::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records always serialise")
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let shown = path.display().to_string();
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt { path: shown.clone(), reason: e.to_string() };
        make_private(path).map_err(|e| StoreError::Engine(format!("cannot make {shown} private (mode 0600): {e}")))?;
        let writer = Connection::open(path).map_err(engine)?;
        // The first statement that reads the file tells a damaged file from a good one.
        let version: i64 = writer.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(corrupt)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerVersion { path: shown, found: version, supported: SCHEMA_VERSION });
        }
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
            .map_err(corrupt)?;
        if version == 0 {
            let tables: i64 =
                writer.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(corrupt)?;
            if tables > 0 {
                return Err(StoreError::Corrupt {
                    path: shown,
                    reason: "it holds tables but no Thunderhead schema version".into(),
                });
            }
        }
        // Each migration runs in its own transaction with the version it reaches.
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let to = from + 1;
            writer.execute_batch(&format!("BEGIN; {sql} PRAGMA user_version = {to}; COMMIT;")).map_err(engine)?;
        }
        let reader = Connection::open(path).map_err(engine)?;
        reader.execute_batch("PRAGMA busy_timeout = 5000;").map_err(engine)?;
        Ok(SqliteStore { path: path.to_path_buf(), writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, reason: impl ToString) -> StoreError {
        StoreError::Corrupt { path: self.path.display().to_string(), reason: reason.to_string() }
    }
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::PutTemplate(t) => {
            tx.prepare_cached("INSERT OR REPLACE INTO templates (name, body) VALUES (?1, ?2)")?
                .execute(params![t.name, json(t)])?;
        }
        Op::DeleteTemplate(name) => {
            tx.prepare_cached("DELETE FROM templates WHERE name = ?1")?.execute(params![name])?;
        }
        Op::PutSeries { prefix, last } => {
            tx.prepare_cached("INSERT OR REPLACE INTO series (prefix, last) VALUES (?1, ?2)")?
                .execute(params![prefix, *last as i64])?;
        }
        Op::PutNode(n) => {
            tx.prepare_cached("INSERT OR REPLACE INTO nodes (name, body) VALUES (?1, ?2)")?
                .execute(params![n.name, json(n)])?;
        }
        Op::DeleteNode(name) => {
            tx.prepare_cached("DELETE FROM nodes WHERE name = ?1")?.execute(params![name])?;
            tx.prepare_cached("DELETE FROM node_log WHERE node = ?1")?.execute(params![name])?;
        }
        Op::PutProxy(proxy) => {
            tx.prepare_cached("INSERT OR REPLACE INTO proxies (name, body) VALUES (?1, ?2)")?
                .execute(params![proxy.name, json(proxy)])?;
        }
        Op::DeleteProxy(name) => {
            tx.prepare_cached("DELETE FROM proxies WHERE name = ?1")?.execute(params![name])?;
        }
        Op::PutPackage(pkg) => {
            tx.prepare_cached("INSERT OR REPLACE INTO packages (name, version, body) VALUES (?1, ?2, ?3)")?
                .execute(params![pkg.name, pkg.version, json(pkg)])?;
        }
        Op::DeletePackage { name, version } => {
            tx.prepare_cached("DELETE FROM packages WHERE name = ?1 AND version = ?2")?
                .execute(params![name, version])?;
        }
        Op::PutUser(u) => {
            tx.prepare_cached("INSERT OR REPLACE INTO users (name, body) VALUES (?1, ?2)")?
                .execute(params![u.name, json(u)])?;
        }
        Op::DeleteUser(name) => {
            tx.prepare_cached("DELETE FROM users WHERE name = ?1")?.execute(params![name])?;
        }
        Op::PutJoinToken(t) => {
            tx.prepare_cached("INSERT OR REPLACE INTO join_tokens (id, body) VALUES (?1, ?2)")?
                .execute(params![t.id, json(t)])?;
        }
        Op::DeleteJoinToken(id) => {
            tx.prepare_cached("DELETE FROM join_tokens WHERE id = ?1")?.execute(params![id])?;
        }
        Op::PutNodeCert(c) => {
            tx.prepare_cached("INSERT OR REPLACE INTO node_certs (fingerprint, node, body) VALUES (?1, ?2, ?3)")?
                .execute(params![c.fingerprint, c.node, json(c)])?;
        }
        Op::PutUsage(u) => {
            tx.prepare_cached("INSERT OR REPLACE INTO usage (id, ended, body) VALUES (?1, ?2, ?3)")?
                .execute(params![u.id as i64, u.end.map(|e| e as i64), json(u)])?;
        }
        Op::NodeLog { node, at, message } => {
            tx.prepare_cached("INSERT INTO node_log (node, at, message) VALUES (?1, ?2, ?3)")?
                .execute(params![node, *at as i64, message])?;
        }
        Op::InsertJob(j) => {
            let kind = match j.spec {
                JobSpec::Sweep { .. } => "sweep",
                JobSpec::Tasks { .. } => "tasks",
            };
            let progress = JobProgress {
                id: j.id,
                state: j.state,
                started_at: j.started_at,
                ended_at: j.ended_at,
                cursor: j.cursor,
                counts: j.counts,
                core_ms: j.core_ms,
                cost_micros: j.cost_micros.clone(),
                at: j.submitted_at,
            };
            tx.prepare_cached("INSERT INTO jobs (id, kind, terminal, body, progress) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![j.id as i64, kind, j.state.is_terminal(), json(j), json(&progress)])?;
        }
        Op::JobProgress(p) => {
            tx.prepare_cached("UPDATE jobs SET terminal = ?2, progress = ?3 WHERE id = ?1")?.execute(params![
                p.id as i64,
                p.state.is_terminal(),
                json(p)
            ])?;
            if !p.cost_micros.is_empty() {
                tx.prepare_cached("INSERT OR REPLACE INTO job_cost (job, minute, at, cost) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![p.id as i64, (p.at / 60_000) as i64, p.at as i64, json(&p.cost_micros)])?;
            }
        }
        Op::PutTask(t) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO tasks (job, idx, state, attempt, losses, node, exit_code, message, started_at, ended_at, stdout, stderr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                t.job as i64,
                t.index as i64,
                t.state.name(),
                t.attempt,
                t.losses,
                t.node,
                t.exit_code,
                t.message,
                t.started_at.map(|v| v as i64),
                t.ended_at.map(|v| v as i64),
                t.stdout,
                t.stderr
            ])?;
        }
    }
    Ok(())
}

const TASK_COLUMNS: &str = "job, idx, state, attempt, losses, node, exit_code, message, started_at, ended_at";

fn task_row(r: &rusqlite::Row<'_>, with_output: bool) -> rusqlite::Result<TaskRow> {
    let state: String = r.get(2)?;
    Ok(TaskRow {
        job: r.get::<_, i64>(0)? as u64,
        index: r.get::<_, i64>(1)? as u64,
        state: TaskState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("task state {state}").into(),
            )
        })?,
        attempt: r.get(3)?,
        losses: r.get(4)?,
        node: r.get(5)?,
        exit_code: r.get(6)?,
        message: r.get(7)?,
        started_at: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        ended_at: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        stdout: if with_output { r.get(10)? } else { None },
        stderr: if with_output { r.get(11)? } else { None },
    })
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot> {
        let db = self.reader.lock().expect("reader lock");
        let bodies = |sql: &str| -> Result<Vec<String>> {
            let mut stmt = db.prepare(sql).map_err(engine)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(engine)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(engine)
        };
        let parse = |what: &str, text: &str| self.corrupt(format!("a {what} record cannot be read: {text}"));
        let templates = bodies("SELECT body FROM templates ORDER BY name")?
            .iter()
            .map(|b| serde_json::from_str::<Template>(b).map_err(|e| parse("template", &e.to_string())))
            .collect::<Result<_>>()?;
        let nodes = bodies("SELECT body FROM nodes ORDER BY name")?
            .iter()
            .map(|b| serde_json::from_str::<NodeRecord>(b).map_err(|e| parse("node", &e.to_string())))
            .collect::<Result<_>>()?;
        let series = {
            let mut stmt = db.prepare("SELECT prefix, last FROM series").map_err(engine)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).map_err(engine)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(engine)?
        };
        let mut jobs = Vec::new();
        {
            let mut stmt = db.prepare("SELECT body, progress FROM jobs ORDER BY id").map_err(engine)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(engine)?;
            for row in rows {
                let (body, progress) = row.map_err(engine)?;
                let mut job: JobRecord = serde_json::from_str(&body).map_err(|e| parse("job", &e.to_string()))?;
                let p: JobProgress = serde_json::from_str(&progress).map_err(|e| parse("job", &e.to_string()))?;
                job.state = p.state;
                job.started_at = p.started_at;
                job.ended_at = p.ended_at;
                job.cursor = p.cursor;
                job.counts = p.counts;
                job.core_ms = p.core_ms;
                job.cost_micros = p.cost_micros;
                jobs.push(job);
            }
        }
        let mut active_tasks = Vec::new();
        {
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE job IN (SELECT id FROM jobs WHERE terminal = 0 AND kind = 'sweep') AND state IN ('Queued', 'Running')
                 UNION ALL
                 SELECT {TASK_COLUMNS} FROM tasks WHERE job IN (SELECT id FROM jobs WHERE terminal = 0 AND kind = 'tasks')"
            );
            let mut stmt = db.prepare(&sql).map_err(engine)?;
            let rows = stmt.query_map([], |r| task_row(r, false)).map_err(engine)?;
            for row in rows {
                active_tasks.push(row.map_err(|e| self.corrupt(e))?);
            }
        }
        let open_usage = bodies("SELECT body FROM usage WHERE ended IS NULL ORDER BY id")?
            .iter()
            .map(|b| serde_json::from_str::<Usage>(b).map_err(|e| parse("usage", &e.to_string())))
            .collect::<Result<_>>()?;
        let next_usage: i64 =
            db.query_row("SELECT coalesce(max(id), 0) + 1 FROM usage", [], |r| r.get(0)).map_err(engine)?;
        let proxies = bodies("SELECT body FROM proxies ORDER BY name")?
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| parse("proxy", &e.to_string())))
            .collect::<Result<_>>()?;
        let packages = bodies("SELECT body FROM packages ORDER BY name, version")?
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| parse("package", &e.to_string())))
            .collect::<Result<_>>()?;
        let users = bodies("SELECT body FROM users ORDER BY name")?
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| parse("user", &e.to_string())))
            .collect::<Result<_>>()?;
        let join_tokens = bodies("SELECT body FROM join_tokens ORDER BY id")?
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| parse("join token", &e.to_string())))
            .collect::<Result<_>>()?;
        let node_certs = bodies("SELECT body FROM node_certs ORDER BY node, fingerprint")?
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| parse("node certificate", &e.to_string())))
            .collect::<Result<_>>()?;
        Ok(Snapshot {
            templates,
            series,
            nodes,
            jobs,
            active_tasks,
            open_usage,
            next_usage: next_usage as u64,
            proxies,
            packages,
            users,
            join_tokens,
            node_certs,
        })
    }

    fn apply(&self, ops: &[Op]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut db = self.writer.lock().expect("writer lock");
        let tx = db.transaction().map_err(engine)?;
        for op in ops {
            apply_op(&tx, op).map_err(engine)?;
        }
        tx.commit().map_err(engine)
    }

    fn tasks(&self, q: TaskQuery) -> Result<Vec<TaskRow>> {
        let db = self.reader.lock().expect("reader lock");
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job = ?1 AND idx > ?2 AND (?3 IS NULL OR state = ?3) ORDER BY idx LIMIT ?4"
        );
        let mut stmt = db.prepare_cached(&sql).map_err(engine)?;
        // Indices are below 2^63: a larger `after` leaves nothing after it.
        let after = match q.after {
            None => -1,
            Some(a) if a > i64::MAX as u64 => return Ok(vec![]),
            Some(a) => a as i64,
        };
        let rows = stmt
            .query_map(params![q.job as i64, after, q.state.map(|s| s.name()), q.limit], |r| task_row(r, false))
            .map_err(engine)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(engine)
    }

    fn task(&self, job: JobId, index: u64) -> Result<Option<TaskRow>> {
        let db = self.reader.lock().expect("reader lock");
        let sql = format!("SELECT {TASK_COLUMNS}, stdout, stderr FROM tasks WHERE job = ?1 AND idx = ?2");
        db.query_row(&sql, params![job as i64, index as i64], |r| task_row(r, true)).optional().map_err(engine)
    }

    fn node_log(&self, node: &str) -> Result<Vec<NodeLogEntry>> {
        let db = self.reader.lock().expect("reader lock");
        let mut stmt =
            db.prepare_cached("SELECT at, message FROM node_log WHERE node = ?1 ORDER BY id").map_err(engine)?;
        let rows = stmt
            .query_map(params![node], |r| Ok(NodeLogEntry { at: r.get::<_, i64>(0)? as u64, message: r.get(1)? }))
            .map_err(engine)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(engine)
    }

    fn usage(&self, since: u64) -> Result<Vec<Usage>> {
        let db = self.reader.lock().expect("reader lock");
        let mut stmt = db
            .prepare_cached("SELECT body FROM usage WHERE ended IS NULL OR ended > ?1 ORDER BY id")
            .map_err(engine)?;
        let rows = stmt.query_map(params![since as i64], |r| r.get::<_, String>(0)).map_err(engine)?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(engine)?;
            out.push(
                serde_json::from_str(&body).map_err(|e| self.corrupt(format!("a usage record cannot be read: {e}")))?,
            );
        }
        Ok(out)
    }

    fn job_cost(&self, since: u64, until: u64) -> Result<Vec<JobCostSample>> {
        let db = self.reader.lock().expect("reader lock");
        let mut stmt = db
            .prepare_cached("SELECT job, at, cost FROM job_cost WHERE minute <= ?1 ORDER BY job, minute")
            .map_err(engine)?;
        let rows = stmt
            .query_map(params![(until / 60_000) as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, String>(2)?))
            })
            .map_err(engine)?;
        let mut out: Vec<JobCostSample> = Vec::new();
        for row in rows {
            let (job, at, cost) = row.map_err(engine)?;
            let cost_micros = serde_json::from_str(&cost)
                .map_err(|e| self.corrupt(format!("a job cost sample cannot be read: {e}")))?;
            // Of the samples before `since`, a job's last one is its total when the period begins.
            if let Some(last) = out.last_mut()
                && last.job == job
                && last.at <= since
                && at <= since
            {
                *last = JobCostSample { job, at, cost_micros };
            } else {
                out.push(JobCostSample { job, at, cost_micros });
            }
        }
        Ok(out)
    }

    fn integrity_check(&self) -> Result<()> {
        let db = self.reader.lock().expect("reader lock");
        let verdict: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(engine)?;
        if verdict == "ok" { Ok(()) } else { Err(self.corrupt(verdict)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::store_contract_tests!(|dir: &std::path::Path| SqliteStore::open(&dir.join("state.db")).unwrap());

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let err = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 99") && err.contains("upgrade"), "{err}");
    }

    #[test]
    fn a_database_of_every_earlier_version_is_migrated_and_keeps_its_data() {
        for from in 1..SCHEMA_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let old = Connection::open(&path).unwrap();
            let schema: String = MIGRATIONS[..from as usize].concat();
            old.execute_batch(&format!("{schema} PRAGMA user_version = {from};")).unwrap();
            old.execute("INSERT INTO series (prefix, last) VALUES ('LocalCN-', 7)", []).unwrap();
            drop(old);
            let s = SqliteStore::open(&path).unwrap();
            let loaded = s.load().unwrap();
            assert_eq!(loaded.series, vec![("LocalCN-".to_string(), 7)], "from version {from}");
            assert!(loaded.users.is_empty() && loaded.node_certs.is_empty(), "the newest tables exist");
            let version: i64 =
                Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
    }

    #[test]
    fn the_database_and_its_wal_and_shm_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mode = |suffix: &str| {
            let meta = std::fs::metadata(dir.path().join(format!("state.db{suffix}"))).unwrap();
            meta.permissions().mode() & 0o777
        };
        let s = SqliteStore::open(&path).unwrap();
        s.apply(&[Op::PutSeries { prefix: "LocalCN-".into(), last: 1 }]).unwrap();
        assert_eq!([mode(""), mode("-wal"), mode("-shm")], [0o600; 3]);
        drop(s);
        // A database an earlier build left readable by others is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(SqliteStore::open(&path).unwrap());
        assert_eq!(mode(""), 0o600);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("damaged or not a Thunderhead database"), "{err}");
    }
}
