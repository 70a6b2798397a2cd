//! The FIM database: SQLite (WAL), one row per recorded path, every row
//! sealed with HMAC-SHA256 under a per-host key kept in a separate 0600 file.
//! A seal row holds the row count and the sum of all row MACs (mod 2^256),
//! itself MACed, so a deleted, added, edited or replayed row is detected on
//! the next read. The format is documented in docs/fim.md.

use super::entry::{Entry, HashAlg, Kind, State, key_path};
use anyhow::{Context, bail};
use plumb_core::fim::{hex, unhex};
use ring::hmac;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Database format version (`PRAGMA user_version`).
pub const FORMAT: i64 = 1;
/// `PRAGMA application_id`: "PLFM".
pub const APPLICATION_ID: i64 = 0x504c_464d;
/// Rows per transaction during a bulk write.
pub const BATCH: usize = 5000;

const ROW_DOMAIN: &[u8] = b"plumb-fim-row-v1";
const SEAL_DOMAIN: &[u8] = b"plumb-fim-seal-v1";
const DIGEST_DOMAIN: &[u8] = b"plumb-fim-digest-v1";
const WATCHES_DOMAIN: &[u8] = b"plumb-fim-watches-v1";

/// The columns of `entries`, in the order rows are read.
pub const COLUMNS: &str = "path, rule, kind, mode, uid, gid, size, mtime_ns, ctime_ns, inode, nlink, \
                           hash_alg, hash, link_target, xattrs, state, error, mac";

const SCHEMA: &str = "
CREATE TABLE entries (
    path BLOB PRIMARY KEY NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    nlink INTEGER NOT NULL,
    hash_alg TEXT,
    hash BLOB,
    link_target BLOB,
    xattrs BLOB,
    state TEXT NOT NULL,
    error TEXT,
    mac BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE seal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    digest BLOB NOT NULL,
    root BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    mac BLOB NOT NULL
);
CREATE TABLE watches (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    roots BLOB NOT NULL,
    mac BLOB NOT NULL
);
";

/// The `watches` table, for databases created before it existed.
const WATCHES_TABLE: &str = "CREATE TABLE IF NOT EXISTS watches (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    roots BLOB NOT NULL,
    mac BLOB NOT NULL
)";

/// The per-host MAC key.
pub struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The key file used when `--key` is not given: `DB.key` beside the database.
pub fn default_key_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(".key");
    PathBuf::from(s)
}

impl Key {
    /// Creates a new random key in `path` (mode 0600); refuses to overwrite.
    pub fn create(path: &Path) -> anyhow::Result<Key> {
        let rng = ring::rand::SystemRandom::new();
        let mut raw = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut raw)
            .map_err(|_| anyhow::anyhow!("no system randomness for a new key"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("creating key file {}", path.display()))?;
        f.write_all(format!("{}\n", hex(&raw)).as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing key file {}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Best effort: the key is written and synced already.
            let _ = plumb_os::atomic::sync_dir(dir);
        }
        Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, &raw)))
    }

    /// Loads the key in `path`, a private key under the trust rule (owner
    /// root or the running user, no group/other access, no symlink).
    pub fn load(path: &Path) -> anyhow::Result<Key> {
        let f = plumb_os::open_trusted(path, plumb_os::FileKind::PrivateKey).map_err(|e| {
            if e.is_not_found() {
                anyhow::anyhow!(
                    "key file {} is missing: the database cannot be verified without it \
                     (restore it, or run `plumb fim init` to start a new database)",
                    path.display()
                )
            } else {
                anyhow::anyhow!("key file {e}")
            }
        })?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f.into_file(), 256), &mut text)
            .with_context(|| format!("reading key file {}", path.display()))?;
        match unhex(text.trim()) {
            Some(raw) if raw.len() == 32 => Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, &raw))),
            _ => bail!(
                "key file {}: not a plumb FIM key (64 hex digits)",
                path.display()
            ),
        }
    }
}

fn put(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u64).to_be_bytes());
    buf.extend_from_slice(b);
}

fn put_opt(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => buf.push(0),
        Some(b) => {
            buf.push(1);
            put(buf, b);
        }
    }
}

/// Canonical bytes of a row: every column, length-prefixed, under a domain tag.
fn row_bytes(key: &[u8], e: &Entry) -> Vec<u8> {
    let mut b = Vec::with_capacity(160 + key.len());
    put(&mut b, ROW_DOMAIN);
    put(&mut b, key);
    put(&mut b, e.rule.as_bytes());
    put(&mut b, e.kind.name().as_bytes());
    for n in [
        u64::from(e.mode),
        u64::from(e.uid),
        u64::from(e.gid),
        e.size,
        e.mtime_ns as u64,
        e.ctime_ns as u64,
        e.inode,
        e.nlink,
    ] {
        b.extend_from_slice(&n.to_be_bytes());
    }
    put_opt(&mut b, e.hash.as_ref().map(|(a, _)| a.name().as_bytes()));
    put_opt(&mut b, e.hash.as_ref().map(|(_, h)| h.as_slice()));
    put_opt(&mut b, e.link_target.as_deref());
    put_opt(&mut b, e.xattrs.as_deref());
    put(&mut b, e.state.name().as_bytes());
    put_opt(
        &mut b,
        match &e.state {
            State::Error(m) => Some(m.as_bytes()),
            _ => None,
        },
    );
    b
}

/// A row MAC.
pub type Mac = [u8; 32];

impl Key {
    /// The MAC sealing `e`'s row.
    pub fn row_mac(&self, e: &Entry) -> Mac {
        // A stored row is verified against its key as stored, byte for byte,
        // not as re-derived from the path (see `verify_row`).
        let tag = hmac::sign(&self.0, &row_bytes(&e.key(), e));
        let mut m = [0u8; 32];
        m.copy_from_slice(tag.as_ref());
        m
    }

    fn seal_mac(&self, s: &SealData) -> Mac {
        let tag = hmac::sign(&self.0, &seal_bytes(s));
        let mut m = [0u8; 32];
        m.copy_from_slice(tag.as_ref());
        m
    }

    fn watches_mac(&self, roots: &[u8], digest: &Digest) -> hmac::Tag {
        hmac::sign(&self.0, &watches_bytes(roots, digest))
    }

    fn verify_row(&self, key: &[u8], e: &Entry, mac: &[u8]) -> bool {
        hmac::verify(&self.0, &row_bytes(key, e), mac).is_ok()
    }

    fn verify_seal(&self, s: &SealData, mac: &[u8]) -> bool {
        hmac::verify(&self.0, &seal_bytes(s), mac).is_ok()
    }
}

#[cfg(feature = "fuzzing")]
impl Key {
    /// A key from raw bytes, for the fuzz targets (`crate::fuzz`).
    pub(crate) fn from_raw(raw: &[u8]) -> Key {
        Key(hmac::Key::new(hmac::HMAC_SHA256, raw))
    }

    /// The MAC this key would give the seal row `vals`, when it decodes:
    /// lets a fuzz target reach the code behind a verifying seal.
    pub(crate) fn seal_mac_of(&self, vals: [&Value; 6]) -> Option<Mac> {
        seal_values(vals).ok().map(|(data, _)| self.seal_mac(&data))
    }
}

/// The watch roots are bound to the seal's digest, so an older list cannot
/// be replayed beside newer rows.
fn watches_bytes(roots: &[u8], digest: &Digest) -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, WATCHES_DOMAIN);
    put(&mut b, roots);
    b.extend_from_slice(&digest.rows.to_be_bytes());
    put(&mut b, &digest.sum);
    b
}

fn seal_bytes(s: &SealData) -> Vec<u8> {
    {
        let mut b = Vec::new();
        put(&mut b, SEAL_DOMAIN);
        b.extend_from_slice(&(s.format as u64).to_be_bytes());
        b.extend_from_slice(&s.digest.rows.to_be_bytes());
        put(&mut b, &s.digest.sum);
        put(&mut b, &s.root);
        put(&mut b, s.updated_at.as_bytes());
        b
    }
}

/// Order-independent digest of a set of rows: their count and the sum of
/// their MACs modulo 2^256. Rows can be added and removed incrementally.
/// Without the key no row MAC can be forged, so no set of rows other than
/// the sealed one has this count and sum; a sum (unlike XOR) also does not
/// cancel out a row inserted twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Number of rows.
    pub rows: u64,
    /// Sum of the row MACs, big-endian, mod 2^256.
    pub sum: [u8; 32],
}

impl Digest {
    /// Adds a row.
    pub fn add(&mut self, mac: &Mac) {
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let s = u16::from(self.sum[i]) + u16::from(mac[i]) + carry;
            self.sum[i] = (s & 0xff) as u8;
            carry = s >> 8;
        }
        self.rows = self.rows.wrapping_add(1);
    }

    /// Removes a row.
    #[cfg(test)]
    pub fn remove(&mut self, mac: &Mac) {
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(self.sum[i]) - i16::from(mac[i]) - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            self.sum[i] = (d & 0xff) as u8;
        }
        self.rows = self.rows.wrapping_sub(1);
    }

    /// `self` with the rows of `gone` taken out and those of `new` put in
    /// (a partial update: `gone` is what was read of some subtrees, `new`
    /// what they hold now).
    pub fn replace(&self, gone: &Digest, new: &Digest) -> Digest {
        let mut sum = [0u8; 32];
        let (mut carry, mut borrow) = (0i32, 0i32);
        for i in (0..32).rev() {
            let mut d = i32::from(self.sum[i]) - i32::from(gone.sum[i]) - borrow;
            borrow = i32::from(d < 0);
            if d < 0 {
                d += 256;
            }
            let s = d + i32::from(new.sum[i]) + carry;
            carry = s >> 8;
            sum[i] = (s & 0xff) as u8;
        }
        Digest {
            rows: self.rows.wrapping_sub(gone.rows).wrapping_add(new.rows),
            sum,
        }
    }

    /// The public form sent to the collector and printed as `db_digest`:
    /// hex SHA-256 over a domain tag, the row count and the sum.
    pub fn hex(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(DIGEST_DOMAIN);
        ctx.update(&self.rows.to_be_bytes());
        ctx.update(&self.sum);
        hex(ctx.finish().as_ref())
    }
}

#[derive(Debug, Clone)]
struct SealData {
    format: i64,
    digest: Digest,
    root: Vec<u8>,
    updated_at: String,
}

/// The seal as found in a database.
#[derive(Debug, Clone)]
pub enum Seal {
    /// Verified.
    Valid {
        /// Sealed count and sum.
        digest: Digest,
    },
    /// Absent or not verifying; the reason.
    Broken(String),
}

/// A row read back, verified or not.
#[derive(Debug)]
pub struct Stored {
    /// Database key.
    pub key: Vec<u8>,
    /// The decoded entry, or why the row cannot be decoded.
    pub entry: Result<Entry, RowError>,
    /// The stored MAC (zeros when absent or malformed).
    pub mac: Mac,
    /// Whether the MAC verifies.
    pub intact: bool,
}

/// Why a stored row (or the seal row) does not decode: it was edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// Not the columns of an entry.
    #[error("wrong number of columns")]
    Columns,
    /// A column of the wrong type.
    #[error("column {col} is not {want}")]
    Type {
        /// The column.
        col: &'static str,
        /// The type it should have (`an integer`, `text`, `a blob`).
        want: &'static str,
    },
    /// A number that does not fit.
    #[error("column {0} is out of range")]
    Range(&'static str),
    /// A value that must be there is null.
    #[error("{0} is null")]
    Null(&'static str),
    /// A digest of the wrong length.
    #[error("digest is not 32 bytes")]
    DigestLength,
    /// A hash algorithm this build does not know.
    #[error("unknown hash_alg {0:?}")]
    HashAlg(String),
    /// A hash without its algorithm or the reverse.
    #[error("hash_alg and hash disagree")]
    HashPair,
    /// An unknown state, or an error state without its message.
    #[error("bad state {0:?}")]
    State(String),
    /// An unknown file type.
    #[error("unknown kind {0:?}")]
    Kind(String),
}

fn int(v: &Value, col: &'static str) -> Result<i64, RowError> {
    match v {
        Value::Integer(i) => Ok(*i),
        _ => Err(RowError::Type {
            col,
            want: "an integer",
        }),
    }
}

fn u32_col(v: &Value, col: &'static str) -> Result<u32, RowError> {
    u32::try_from(int(v, col)?).map_err(|_| RowError::Range(col))
}

fn text(v: &Value, col: &'static str) -> Result<String, RowError> {
    match v {
        Value::Text(s) => Ok(s.clone()),
        _ => Err(RowError::Type { col, want: "text" }),
    }
}

fn opt_blob(v: &Value, col: &'static str) -> Result<Option<Vec<u8>>, RowError> {
    match v {
        Value::Null => Ok(None),
        Value::Blob(b) => Ok(Some(b.clone())),
        _ => Err(RowError::Type {
            col,
            want: "a blob",
        }),
    }
}

fn decode(vals: &[Value]) -> Result<Entry, RowError> {
    let [
        path,
        rule,
        kind,
        mode,
        uid,
        gid,
        size,
        mtime,
        ctime,
        inode,
        nlink,
        alg,
        hash,
        link,
        xattrs,
        state,
        error,
        _mac,
    ] = vals
    else {
        return Err(RowError::Columns);
    };
    let key = opt_blob(path, "path")?.ok_or(RowError::Null("column path"))?;
    let hash = match (alg, opt_blob(hash, "hash")?) {
        (Value::Null, None) => None,
        (Value::Text(a), Some(h)) => Some((
            HashAlg::from_name(a).ok_or_else(|| RowError::HashAlg(a.clone()))?,
            h,
        )),
        _ => return Err(RowError::HashPair),
    };
    let state = match (text(state, "state")?.as_str(), error) {
        ("ok", Value::Null) => State::Ok,
        ("unstable", Value::Null) => State::Unstable,
        ("error", Value::Text(m)) => State::Error(m.clone()),
        (s, _) => return Err(RowError::State(s.to_string())),
    };
    let kind_name = text(kind, "kind")?;
    Ok(Entry {
        path: key_path(&key),
        rule: std::sync::Arc::from(text(rule, "rule")?.as_str()),
        kind: Kind::from_name(&kind_name).ok_or_else(|| RowError::Kind(kind_name.clone()))?,
        mode: u32_col(mode, "mode")?,
        uid: u32_col(uid, "uid")?,
        gid: u32_col(gid, "gid")?,
        size: int(size, "size")? as u64,
        mtime_ns: int(mtime, "mtime_ns")?,
        ctime_ns: int(ctime, "ctime_ns")?,
        inode: int(inode, "inode")? as u64,
        nlink: int(nlink, "nlink")? as u64,
        hash,
        link_target: opt_blob(link, "link_target")?,
        xattrs: opt_blob(xattrs, "xattrs")?,
        state,
    })
}

/// Decodes and verifies the values of one row of `SELECT {COLUMNS}`,
/// whatever they hold: a row edited without the key is `intact: false`
/// (and its entry an error when it does not even decode), never a panic.
pub(crate) fn stored(key: &Key, vals: &[Value]) -> Stored {
    let path = match vals.first() {
        Some(Value::Blob(b)) => b.clone(),
        Some(Value::Text(t)) => t.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    let stored_mac: Option<Mac> = match vals.get(17) {
        Some(Value::Blob(b)) => b.as_slice().try_into().ok(),
        _ => None,
    };
    let entry = decode(vals);
    let intact = match (&entry, stored_mac) {
        (Ok(e), Some(m)) => key.verify_row(&path, e, &m),
        _ => false,
    };
    Stored {
        key: path,
        entry,
        mac: stored_mac.unwrap_or([0; 32]),
        intact,
    }
}

/// The seal row's values (`format, rows, digest, root, updated_at, mac`)
/// decoded, not yet verified.
fn seal_values(vals: [&Value; 6]) -> Result<(SealData, Vec<u8>), RowError> {
    let [format, rows, digest, root, updated_at, mac] = vals;
    let sum = opt_blob(digest, "digest")?.ok_or(RowError::Null("digest"))?;
    let sum: [u8; 32] = sum.try_into().map_err(|_| RowError::DigestLength)?;
    Ok((
        SealData {
            format: int(format, "format")?,
            digest: Digest {
                rows: int(rows, "rows")? as u64,
                sum,
            },
            root: opt_blob(root, "root")?.ok_or(RowError::Null("root"))?,
            updated_at: text(updated_at, "updated_at")?,
        },
        opt_blob(mac, "mac")?.ok_or(RowError::Null("mac"))?,
    ))
}

/// [`seal_values`], then the seal's MAC: what [`Db::seal`] concludes from
/// a seal row.
pub(crate) fn seal_of(key: &Key, vals: [&Value; 6]) -> Seal {
    let (data, mac) = match seal_values(vals) {
        Ok(x) => x,
        Err(m) => return Seal::Broken(format!("the seal row is malformed: {m}")),
    };
    if !key.verify_seal(&data, &mac) {
        return Seal::Broken(
            "the seal does not verify with this key (edited, or sealed with another key)".into(),
        );
    }
    Seal::Valid {
        digest: data.digest,
    }
}

/// An open FIM database and its key.
pub struct Db {
    conn: Connection,
    key: Key,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db(..)")
    }
}

impl Db {
    /// Creates a new database at `path`, which must not exist.
    pub fn create(path: &Path, key: Key) -> anyhow::Result<Db> {
        if path.exists() {
            bail!("{} already exists", path.display());
        }
        // 0600 before SQLite opens it, whatever the umask (its -wal and
        // -shm take the same mode).
        plumb_os::private::prepare_private_db(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("creating {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", FORMAT)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db { conn, key })
    }

    /// Opens an existing database.
    pub fn open(path: &Path, key: Key) -> anyhow::Result<Db> {
        if !path.is_file() {
            bail!(
                "database {} does not exist (run `plumb fim init` first)",
                path.display()
            );
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let app: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .with_context(|| format!("{}: not a SQLite database", path.display()))?;
        let fmt: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if app != APPLICATION_ID {
            bail!("{}: not a plumb FIM database", path.display());
        }
        if fmt != FORMAT {
            bail!(
                "{}: FIM database format {fmt}, this build reads format {FORMAT}",
                path.display()
            );
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Ok(Db { conn, key })
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The connection (for streaming reads).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Starts a transaction (`IMMEDIATE`: the write lock is taken now).
    pub fn begin(&self) -> anyhow::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Starts a read transaction and pins its snapshot.
    pub fn begin_read(&self) -> anyhow::Result<()> {
        self.conn.execute_batch("BEGIN")?;
        self.conn
            .query_row("SELECT count(*) FROM seal", [], |_| Ok(()))?;
        Ok(())
    }

    /// Commits.
    pub fn commit(&self) -> anyhow::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Rolls back (if a transaction is open).
    pub fn rollback(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    /// Writes (inserts or replaces) `e`'s row sealed with `mac`.
    pub fn put(&self, e: &Entry, mac: &Mac) -> anyhow::Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO entries (path, rule, kind, mode, uid, gid, size, mtime_ns, ctime_ns, \
             inode, nlink, hash_alg, hash, link_target, xattrs, state, error, mac) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        st.execute(params![
            e.key(),
            e.rule.as_ref(),
            e.kind.name(),
            i64::from(e.mode),
            i64::from(e.uid),
            i64::from(e.gid),
            e.size as i64,
            e.mtime_ns,
            e.ctime_ns,
            e.inode as i64,
            e.nlink as i64,
            e.hash.as_ref().map(|(a, _)| a.name()),
            e.hash.as_ref().map(|(_, h)| h.as_slice()),
            e.link_target.as_deref(),
            e.xattrs.as_deref(),
            e.state.name(),
            match &e.state {
                State::Error(m) => Some(m.as_str()),
                _ => None,
            },
            &mac[..],
        ])?;
        Ok(())
    }

    /// Deletes the row of `key`.
    pub fn delete(&self, key: &[u8]) -> anyhow::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM entries WHERE path = ?1")?
            .execute(params![key])?;
        Ok(())
    }

    /// Writes the seal for `digest`.
    pub fn write_seal(&self, digest: Digest, root: &[u8]) -> anyhow::Result<()> {
        let data = SealData {
            format: FORMAT,
            digest,
            root: root.to_vec(),
            updated_at: crate::host::now_rfc3339(),
        };
        let mac = self.key.seal_mac(&data);
        self.conn.execute(
            "INSERT OR REPLACE INTO seal (id, format, rows, digest, root, updated_at, mac) \
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                data.format,
                digest.rows as i64,
                &digest.sum[..],
                data.root,
                data.updated_at,
                &mac[..]
            ],
        )?;
        Ok(())
    }

    /// Records the watch roots a whole pass covered, bound to the seal's
    /// `digest` (written in the same transaction as the seal). `None`
    /// forgets them: the next reader cannot tell which roots were covered.
    pub fn write_watches(&self, roots: Option<&[String]>, digest: &Digest) -> anyhow::Result<()> {
        self.conn.execute_batch(WATCHES_TABLE)?;
        self.conn.execute("DELETE FROM watches", [])?;
        if let Some(roots) = roots {
            let json = serde_json::to_vec(roots)?;
            let mac = self.key.watches_mac(&json, digest);
            self.conn.execute(
                "INSERT INTO watches (id, roots, mac) VALUES (1, ?1, ?2)",
                params![json, mac.as_ref()],
            )?;
        }
        Ok(())
    }

    /// The watch roots the last whole pass covered, when they are recorded
    /// and verify against the seal's `digest`; `None` otherwise (a database
    /// made by `plumb fim init`, an older one, or an edited list).
    pub fn watches(&self, digest: &Digest) -> anyhow::Result<Option<Vec<String>>> {
        let has_table: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watches')",
            [],
            |r| r.get(0),
        )?;
        if !has_table {
            return Ok(None);
        }
        let row = self
            .conn
            .query_row("SELECT roots, mac FROM watches", [], |r| {
                Ok((r.get::<_, Value>(0)?, r.get::<_, Value>(1)?))
            });
        let (roots, mac) = match row {
            Ok((Value::Blob(roots), Value::Blob(mac))) => (roots, mac),
            Ok(_) | Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if hmac::verify(&self.key.0, &watches_bytes(&roots, digest), &mac).is_err() {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&roots).ok())
    }

    /// Reads and verifies the seal.
    pub fn seal(&self) -> anyhow::Result<Seal> {
        let row = self.conn.query_row(
            "SELECT format, rows, digest, root, updated_at, mac, (SELECT count(*) FROM seal) FROM seal",
            [],
            |r| {
                Ok((
                    r.get::<_, Value>(0)?,
                    r.get::<_, Value>(1)?,
                    r.get::<_, Value>(2)?,
                    r.get::<_, Value>(3)?,
                    r.get::<_, Value>(4)?,
                    r.get::<_, Value>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        );
        let (format, rows, digest, root, updated_at, mac, n) = match row {
            Ok(r) => r,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                return Ok(Seal::Broken("the seal row is missing".into()));
            }
            Err(e) => return Err(e.into()),
        };
        if n != 1 {
            return Ok(Seal::Broken(format!("{n} seal rows instead of one")));
        }
        Ok(seal_of(
            &self.key,
            [&format, &rows, &digest, &root, &updated_at, &mac],
        ))
    }

    /// Decodes and verifies one row of `SELECT {COLUMNS}`.
    pub fn stored(&self, row: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
        let mut vals = Vec::with_capacity(18);
        for i in 0..18 {
            vals.push(row.get::<_, Value>(i)?);
        }
        Ok(stored(&self.key, &vals))
    }

    /// Looks up one row (verified) by in-root path.
    #[cfg(test)]
    pub fn get(&self, path: &[u8]) -> anyhow::Result<Option<Stored>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM entries WHERE path = ?1"))?;
        let mut rows = st.query(params![super::entry::path_key(path)])?;
        match rows.next()? {
            Some(r) => Ok(Some(self.stored(r)?)),
            None => Ok(None),
        }
    }

    /// Checkpoints the WAL into the main file and closes the database.
    pub fn close(self) -> anyhow::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

/// The database's sealed digest (as printed in `db_digest`), after checking
/// the seal with the key. This is what the agent sends to the collector with
/// each heartbeat. It does not read the rows; `plumb fim check` does.
pub fn sealed_digest(db: &Path, key: &Path) -> anyhow::Result<String> {
    let db = Db::open(db, Key::load(key)?)?;
    match db.seal()? {
        Seal::Valid { digest, .. } => Ok(digest.hex()),
        Seal::Broken(why) => bail!("FIM database seal: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            rule: Arc::from("/etc"),
            kind: Kind::File,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime_ns: -5,
            ctime_ns: 1_700_000_000_123_456_789,
            inode: u64::MAX,
            nlink: 1,
            hash: Some((HashAlg::Sha256, vec![7; 32])),
            link_target: None,
            xattrs: Some(Vec::new()),
            state: State::Error("x".into()),
        }
    }

    #[test]
    fn digest_add_remove_round_trip_and_order_independent() {
        let (a, b) = ([0xffu8; 32], [1u8; 32]);
        let mut d1 = Digest::default();
        d1.add(&a);
        d1.add(&b);
        let mut d2 = Digest::default();
        d2.add(&b);
        d2.add(&a);
        assert_eq!(d1, d2);
        d1.remove(&a);
        let mut d3 = Digest::default();
        d3.add(&b);
        assert_eq!(d1, d3);
        // A row added twice does not cancel out.
        let mut d4 = Digest::default();
        d4.add(&b);
        d4.add(&b);
        assert_ne!(d4.sum, [0u8; 32]);
        // A partial update: {a, b, c} with {b} replaced by {d, e}.
        let (c, dd, e) = ([0x80u8; 32], [0xfeu8; 32], [9u8; 32]);
        let mut whole = Digest::default();
        for m in [&a, &b, &c] {
            whole.add(m);
        }
        let mut gone = Digest::default();
        gone.add(&b);
        let mut new = Digest::default();
        new.add(&dd);
        new.add(&e);
        let mut want = Digest::default();
        for m in [&a, &c, &dd, &e] {
            want.add(m);
        }
        assert_eq!(whole.replace(&gone, &new), want);
    }

    #[test]
    fn rows_round_trip_and_verify() {
        let d = tempfile::tempdir().unwrap();
        let kp = d.path().join("k");
        let key = Key::create(&kp).unwrap();
        assert!(Key::create(&kp).is_err(), "never overwrites a key");
        let db = Db::create(&d.path().join("db"), key).unwrap();
        let e = entry("/etc/\u{e9}\n\u{1}");
        let mac = db.key().row_mac(&e);
        db.put(&e, &mac).unwrap();
        let got = db.get(&e.path).unwrap().unwrap();
        assert!(got.intact);
        assert_eq!(got.entry.unwrap(), e);
        // Any column edited behind our back breaks the MAC.
        db.conn().execute("UPDATE entries SET uid = 1", []).unwrap();
        assert!(!db.get(&e.path).unwrap().unwrap().intact);
    }

    #[test]
    fn key_file_must_be_private_and_present() {
        let d = tempfile::tempdir().unwrap();
        let kp = d.path().join("k");
        let e = Key::load(&kp).unwrap_err().to_string();
        assert!(e.contains("is missing"), "{e}");
        Key::create(&kp).unwrap();
        Key::load(&kp).unwrap();
        std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Key::load(&kp).unwrap_err().to_string();
        assert!(
            e.contains("mode 0644 gives group/other access to a private key"),
            "{e}"
        );
    }

    #[test]
    fn seal_verifies_and_detects_edits() {
        let d = tempfile::tempdir().unwrap();
        let kp = d.path().join("k");
        let db = Db::create(&d.path().join("db"), Key::create(&kp).unwrap()).unwrap();
        let mut dg = Digest::default();
        dg.add(&[3; 32]);
        db.write_seal(dg, b"/").unwrap();
        assert!(matches!(db.seal().unwrap(), Seal::Valid { digest, .. } if digest == dg));
        db.close().unwrap();
        assert_eq!(sealed_digest(&d.path().join("db"), &kp).unwrap(), dg.hex());
        let c = Connection::open(d.path().join("db")).unwrap();
        c.execute("UPDATE seal SET rows = 2", []).unwrap();
        drop(c);
        assert!(sealed_digest(&d.path().join("db"), &kp).is_err());
    }
}
