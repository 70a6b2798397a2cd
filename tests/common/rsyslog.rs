//! A throwaway rsyslog (Debian's `rsyslog` and `rsyslog-gnutls` /
//! `rsyslog-openssl`): `rsyslogd -n -f CONF -i PIDFILE` with its own
//! configuration in a temporary directory, an `imtcp` input on 127.0.0.1
//! (port 0, read back from its port file) speaking TLS with the fleet
//! PKI's `localhost` certificate, writing every raw message as one line to
//! a file there. Killed on drop; the host's rsyslog is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `ignore` reason of the tests that need it.
pub const NEEDS: &str = "needs rsyslogd (apt install rsyslog rsyslog-gnutls rsyslog-openssl)";

pub struct Rsyslog {
    pub tmp: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    /// Starts rsyslogd with TLS `driver` (`gtls` or `ossl`) and the server
    /// certificate `cert`/`key` chaining to `ca`. With `peer`, clients must
    /// present a certificate chaining to `ca` that names `peer`
    /// (`x509/name`); without, any client is accepted (`anon`).
    pub fn start(driver: &str, ca: &Path, cert: &Path, key: &Path, peer: Option<&str>) -> Rsyslog {
        let bin = Path::new("/usr/sbin/rsyslogd");
        assert!(bin.exists(), "no /usr/sbin/rsyslogd: {NEEDS}");
        let module = format!("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_{driver}.so");
        assert!(Path::new(&module).exists(), "no {module}: {NEEDS}");
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir(d.join("work")).unwrap();
        let conf = format!(
            r#"global(workDirectory="{work}"
       defaultNetstreamDriver="{driver}"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" streamDriver.name="{driver}" streamDriver.mode="1" {auth})
template(name="raw" type="string" string="%rawmsg%\n")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{portfile}" ruleset="siem")
ruleset(name="siem") {{
  action(type="omfile" file="{out}" template="raw")
}}
"#,
            work = d.join("work").display(),
            auth = match peer {
                Some(p) => format!("streamDriver.authMode=\"x509/name\" PermittedPeer=[\"{p}\"]"),
                None => "streamDriver.authMode=\"anon\"".to_string(),
            },
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
            portfile = d.join("port").display(),
            out = d.join("messages.log").display(),
        );
        std::fs::write(d.join("rsyslog.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut r = Rsyslog {
            tmp,
            port: 0,
            child,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(p) = std::fs::read_to_string(r.tmp.path().join("port")) {
                if let Ok(p) = p.trim().parse() {
                    r.port = p;
                    return r;
                }
            }
            if let Some(s) = r.child.try_wait().unwrap() {
                panic!("rsyslogd exited ({s}) before listening");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rsyslogd did not write its port file");
    }

    pub fn messages_file(&self) -> PathBuf {
        self.tmp.path().join("messages.log")
    }

    /// The raw messages received so far, one per line.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.messages_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
