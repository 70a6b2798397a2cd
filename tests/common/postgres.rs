//! A throwaway PostgreSQL server for the tests: Debian's `postgresql`
//! binaries, `initdb` into a temporary directory as an unprivileged user
//! (`nobody` when the tests run as root, as in CI: PostgreSQL refuses to
//! run as root), its Unix socket in that directory, TCP on 127.0.0.1 on a
//! free port, stopped (immediate) on drop. The host's clusters and users
//! are never touched.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ignore` reason of the tests that need it.
pub const NEEDS: &str = "needs PostgreSQL (initdb: apt install postgresql-15)";

/// Directory of the PostgreSQL server binaries (`PLUMB_PG_BIN`, else the
/// newest `/usr/lib/postgresql/*/bin` holding `initdb`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PLUMB_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): {NEEDS}")
    })
}

/// A running throwaway server; stopped on drop.
pub struct Postgres {
    pub tmp: tempfile::TempDir,
    /// Data directory, also the Unix socket directory.
    pub data: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// initdb, then start. `synchronous_commit` stays on (the default);
    /// fsync is off: the tests kill processes, not the machine.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let tmp = tempfile::tempdir().unwrap();
        // The unprivileged user must reach the data directory.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = tmp.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(
                &data,
                Some(nix::unistd::Uid::from_raw(65534)),
                Some(nix::unistd::Gid::from_raw(65534)),
            )
            .unwrap();
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let pg = Postgres {
            tmp,
            data,
            port: free_port(),
            bin,
        };
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data_str(),
                "-U",
                "plumb",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb: {}", text(&out));
        std::fs::write(
            pg.data.join("postgresql.auto.conf"),
            "fsync = off\nfull_page_writes = off\nmax_connections = 200\nshared_buffers = 32MB\n",
        )
        .unwrap();
        pg.pg_start();
        pg
    }

    fn data_str(&self) -> String {
        self.data.display().to_string()
    }

    /// Runs a PostgreSQL program as the unprivileged user.
    fn run(&self, prog: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(prog);
        let mut c = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--reset-env",
            ])
            .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(args).current_dir(self.tmp.path()).output().unwrap()
    }

    fn pg_start(&self) {
        let opts = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1",
            self.data_str(),
            self.port
        );
        let log = self.data.join("server.log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_str(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server at once (as a crash would), keeping its data.
    pub fn stop(&self) {
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data_str(), "-m", "immediate", "-w", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn restart(&self) {
        self.pg_start();
    }

    /// Creates a database and returns the collector's connection string
    /// for it (over the Unix socket).
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// The connection string of database `name` (Unix socket).
    pub fn url(&self, name: &str) -> String {
        format!(
            "host={} port={} user=plumb dbname={name}",
            self.data_str(),
            self.port
        )
    }

    /// The `[storage]` lines of a collector on database `name`
    /// (revocations polled every second).
    pub fn storage_toml(&self, name: &str) -> String {
        format!(
            "backend = \"postgres\"\n[storage.postgres]\nurl = \"{}\"\nrevocation_poll_secs = 1\n",
            self.url(name)
        )
    }

    /// Runs SQL with psql; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.data_str(),
                "-p",
                &port,
                "-U",
                "plumb",
                "-d",
                db,
                "-c",
                sql,
            ],
        );
        assert!(out.status.success(), "psql {sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data_str(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
