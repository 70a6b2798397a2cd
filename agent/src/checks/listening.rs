//! `kind = "listening"`: sockets waiting for peers, from the kernel's
//! socket tables `PROC/net/{tcp,tcp6,udp,udp6}`. A TCP socket counts in
//! state LISTEN; a UDP socket counts when bound to a local port and not
//! connected (state 07, "close", with a non-zero port).

use super::process::{for_each_proc_line, pid_of, read_proc_small};
use super::{Ctx, Outcome};
use plumb_core::check::ListeningCheck;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Socket tables are streamed, not held; this bounds the time spent on a
/// host with a huge number of connections (about 150 bytes a socket).
const MAX_TABLE_BYTES: u64 = 256 * 1024 * 1024;

/// Most offending sockets listed in evidence.
const MAX_SHOWN: usize = 50;

/// Most `PROC/[pid]/fd` entries read while naming socket owners.
const MAX_FD_LINKS: usize = 200_000;

const TCP_LISTEN: u8 = 0x0A;
const TCP_CLOSE: u8 = 0x07;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Socket {
    proto: &'static str,
    addr: SocketAddr,
    inode: u64,
    /// `PROC/net/tcp:3`
    at: String,
}

impl Socket {
    fn describe(&self, owner: Option<&String>) -> String {
        let state = if self.proto.starts_with("tcp") {
            " LISTEN"
        } else {
            ""
        };
        let by = owner.map(|o| format!(" by {o}")).unwrap_or_default();
        format!("{} {}{state}{by} ({})", self.proto, self.addr, self.at)
    }
}

/// Decodes the kernel's hex address: 8 (IPv4) or 32 (IPv6) hex digits,
/// each 32-bit word printed as a native-endian integer of network-order
/// bytes, then `:` and the port in plain hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !ip.is_ascii() {
        return None;
    }
    let words = |n: usize| -> Option<Vec<[u8; 4]>> {
        if ip.len() != n * 8 {
            return None;
        }
        (0..n)
            .map(|i| {
                u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                    .ok()
                    .map(u32::to_ne_bytes)
            })
            .collect()
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(*words(1)?.first()?)),
        32 => {
            let mut b = [0u8; 16];
            for (i, w) in words(4)?.into_iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses one table row: `sl local rem st queues tr retrnsmt uid timeout inode ...`.
/// Returns the local address, state and inode.
fn parse_row(line: &str) -> Option<(SocketAddr, u8, u64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || !f[0].ends_with(':') {
        return None;
    }
    let local = parse_addr(f[1])?;
    let state = u8::from_str_radix(f[3], 16).ok()?;
    let inode = f[9].parse().ok()?;
    Some((local, state, inode))
}

/// What reading the tables found.
#[derive(Debug)]
pub(crate) struct Tables {
    sockets: Vec<Socket>,
    /// Tables that do not exist (IPv6 disabled, say).
    missing: Vec<&'static str>,
}

/// The socket tables of `proc`, or the rule's error outcome.
fn read_tables(proc: &Path) -> Result<Tables, Outcome> {
    let mut sockets = Vec::new();
    let mut missing = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let file = proc.join("net").join(proto);
        let shown = file.display().to_string();
        let mut bad: Option<usize> = None;
        let read = for_each_proc_line(&file, MAX_TABLE_BYTES, |n, line| {
            if n == 1 || line.trim().is_empty() || bad.is_some() {
                return; // the header, or after the first malformed row
            }
            let Some((addr, state, inode)) = parse_row(line) else {
                bad = Some(n);
                return;
            };
            let listening = if proto.starts_with("tcp") {
                state == TCP_LISTEN
            } else {
                state == TCP_CLOSE && addr.port() != 0
            };
            if listening {
                sockets.push(Socket {
                    proto,
                    addr,
                    inode,
                    at: format!("{shown}:{n}"),
                });
            }
        });
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(proto),
            Err(e) => return Err(Outcome::error(format!("cannot read {shown}: {e}"))),
        }
        if let Some(n) = bad {
            // A row we cannot read could be the very socket the rule is about.
            return Err(Outcome::error(format!(
                "cannot parse {shown}:{n}: not a socket table row"
            )));
        }
    }
    for (v4, v6) in [("tcp", "tcp6"), ("udp", "udp6")] {
        if missing.contains(&v4) && missing.contains(&v6) {
            return Err(Outcome::error(format!(
                "no {v4} socket table: neither {0}/net/{v4} nor {0}/net/{v6} exists",
                proc.display()
            )));
        }
    }
    Ok(Tables { sockets, missing })
}

/// Names the processes holding these socket inodes, as `comm[pid]`, from
/// the `socket:[INODE]` links in `PROC/[pid]/fd`. Best effort and bounded:
/// an unreadable fd directory (another user's process) is skipped.
fn owners(proc: &Path, wanted: &HashSet<u64>) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return out;
    }
    let Ok(entries) = std::fs::read_dir(proc) else {
        return out;
    };
    let mut budget = MAX_FD_LINKS;
    for entry in entries.flatten() {
        let Some(pid) = pid_of(&entry.file_name()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if budget == 0 {
                return out;
            }
            budget -= 1;
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            let Some(inode) = inode.filter(|i| wanted.contains(i)) else {
                continue;
            };
            if out.contains_key(&inode) {
                continue;
            }
            let comm = read_proc_small(&entry.path().join("comm"), 64)
                .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
                .unwrap_or_default();
            let name = if comm.is_empty() { "pid".into() } else { comm };
            out.insert(inode, format!("{name}[{pid}]"));
            if out.len() == wanted.len() {
                return out;
            }
        }
    }
    out
}

fn port_list(ports: &BTreeSet<u16>) -> String {
    let shown: Vec<String> = ports.iter().take(MAX_SHOWN).map(u16::to_string).collect();
    let more = ports.len().saturating_sub(MAX_SHOWN);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Evaluates a `listening` check.
pub fn evaluate(spec: &ListeningCheck, ctx: &Ctx) -> Outcome {
    let proc = match ctx.proc_dir() {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    // Read once per run: reading a socket table walks the kernel's whole
    // connection hash, which costs milliseconds on a large machine.
    let tables = match ctx.sockets.get_or_init(|| read_tables(proc)) {
        Ok(t) => t,
        Err(e) => return e.clone(),
    };
    let mut bad: Vec<(&Socket, String)> = Vec::new();
    for s in &tables.sockets {
        let port = s.addr.port();
        if spec.forbidden_ports.contains(&port) {
            bad.push((s, format!("port {port} is forbidden")));
        } else if let Some(allowed) = &spec.allowed_ports {
            if !allowed.contains(&port) {
                bad.push((s, format!("port {port} is not in allowed_ports")));
            }
        }
    }
    let mut ev = Vec::new();
    let ok = bad.is_empty();
    if ok {
        let ports: BTreeSet<u16> = tables.sockets.iter().map(|s| s.addr.port()).collect();
        ev.push(if ports.is_empty() {
            "no listening sockets".to_string()
        } else {
            format!(
                "{} listening sockets, none on a disallowed port; ports: {}",
                tables.sockets.len(),
                port_list(&ports)
            )
        });
    } else {
        let wanted: HashSet<u64> = bad
            .iter()
            .take(MAX_SHOWN)
            .map(|(s, _)| s.inode)
            .filter(|&i| i != 0)
            .collect();
        let names = owners(proc, &wanted);
        for (s, why) in bad.iter().take(MAX_SHOWN) {
            ev.push(format!("{}: {why}", s.describe(names.get(&s.inode))));
        }
        if bad.len() > MAX_SHOWN {
            ev.push(format!("and {} more", bad.len() - MAX_SHOWN));
        }
    }
    for m in &tables.missing {
        ev.push(format!(
            "{}/net/{m} does not exist (protocol disabled)",
            proc.display()
        ));
    }
    Outcome::verdict(ok, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::report::Status;

    const HEAD: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// A socket table row, addresses as this (little-endian) kernel prints them.
    fn row(sl: usize, local: &str, remote: &str, st: &str, inode: u64) -> String {
        format!(
            "{sl:4}: {local} {remote} {st} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
        )
    }

    /// Writes `PROC/net/NAME` with a header and these rows.
    fn table(proc: &Path, name: &str, rows: &[String]) {
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::write(
            proc.join("net").join(name),
            format!("{HEAD}{}", rows.concat()),
        )
        .unwrap();
    }

    fn fake() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        table(
            p,
            "tcp",
            &[
                // 0.0.0.0:22 LISTEN
                row(0, "00000000:0016", "00000000:0000", "0A", 1001),
                // 127.0.0.1:25 LISTEN
                row(1, "0100007F:0019", "00000000:0000", "0A", 1002),
                // 10.0.0.5:22 -> 10.0.0.9:51000 ESTABLISHED: not listening
                row(2, "0500000A:0016", "0900000A:C738", "01", 1003),
                // 0.0.0.0:23 LISTEN
                row(3, "00000000:0017", "00000000:0000", "0A", 1004),
                // 10.0.0.5:4444 TIME_WAIT: not listening
                row(4, "0500000A:115C", "0900000A:C739", "06", 0),
            ],
        );
        table(
            p,
            "tcp6",
            &[
                // [::]:22 LISTEN
                row(
                    0,
                    "00000000000000000000000000000000:0016",
                    "00000000000000000000000000000000:0000",
                    "0A",
                    2001,
                ),
                // [::1]:8080 LISTEN
                row(
                    1,
                    "00000000000000000000000001000000:1F90",
                    "00000000000000000000000000000000:0000",
                    "0A",
                    2002,
                ),
            ],
        );
        table(
            p,
            "udp",
            &[
                // 0.0.0.0:68 bound
                row(0, "00000000:0044", "00000000:0000", "07", 3001),
                // 10.0.0.5:40000 -> 10.0.0.1:53 connected: a client, not listening
                row(1, "0500000A:9C40", "0100000A:0035", "01", 3002),
                // unbound UDP socket (port 0): not listening
                row(2, "00000000:0000", "00000000:0000", "07", 3003),
            ],
        );
        table(
            p,
            "udp6",
            &[
                // [::]:111 bound
                row(
                    0,
                    "00000000000000000000000000000000:006F",
                    "00000000000000000000000000000000:0000",
                    "07",
                    4001,
                ),
            ],
        );
        t
    }

    fn ctx(proc: &Path) -> Ctx {
        Ctx::new("/nonexistent-root", Some(proc.to_path_buf()))
    }

    fn forbid(ports: &[u16]) -> ListeningCheck {
        ListeningCheck {
            forbidden_ports: ports.to_vec(),
            allowed_ports: None,
        }
    }

    fn allow(ports: &[u16]) -> ListeningCheck {
        ListeningCheck {
            forbidden_ports: vec![],
            allowed_ports: Some(ports.to_vec()),
        }
    }

    #[test]
    fn decodes_v4_and_v6_addresses() {
        assert_eq!(
            parse_addr("0100007F:0019").unwrap().to_string(),
            "127.0.0.1:25"
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:1F90")
                .unwrap()
                .to_string(),
            "[::1]:8080"
        );
        // fe80::1 as printed by a little-endian kernel.
        assert_eq!(
            parse_addr("000080FE000000000000000001000000:0016")
                .unwrap()
                .to_string(),
            "[fe80::1]:22"
        );
        // IPv4-mapped 192.168.1.2.
        assert_eq!(
            parse_addr("0000000000000000FFFF00000201A8C0:0050")
                .unwrap()
                .to_string(),
            "[::ffff:192.168.1.2]:80"
        );
        for bad in [
            "",
            "0100007F",
            "0100007F:",
            "0100007:0019",
            "ZZ00007F:0019",
            "é1234567:0019",
        ] {
            assert!(parse_addr(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forbidden_port_fails_for_each_socket() {
        let t = fake();
        let out = evaluate(&forbid(&[23, 111]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
        let d = t.path().display();
        assert_eq!(
            out.evidence,
            vec![
                format!("tcp 0.0.0.0:23 LISTEN ({d}/net/tcp:5): port 23 is forbidden"),
                format!("udp6 [::]:111 ({d}/net/udp6:2): port 111 is forbidden"),
            ]
        );
    }

    #[test]
    fn only_listening_tcp_and_bound_udp_count() {
        let t = fake();
        // 4444 is TIME_WAIT, 40000 a connected UDP client, 0 an unbound socket.
        let out = evaluate(&forbid(&[4444, 40000, 0]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence[0],
            "7 listening sockets, none on a disallowed port; ports: 22, 23, 25, 68, 111, 8080"
        );
        // A port that only an established connection uses locally.
        let out = evaluate(&allow(&[22, 23, 25, 68, 111, 8080]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
    }

    #[test]
    fn allowed_ports_fail_for_every_other_listener() {
        let t = fake();
        let out = evaluate(&allow(&[22, 68]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
        let ev = out.evidence.join("\n");
        assert_eq!(out.evidence.len(), 4, "{ev}");
        assert!(ev.contains("tcp 127.0.0.1:25 LISTEN"), "{ev}");
        assert!(ev.contains("tcp 0.0.0.0:23 LISTEN"), "{ev}");
        assert!(ev.contains("tcp6 [::1]:8080 LISTEN"), "{ev}");
        assert!(
            ev.contains("udp6 [::]:111 (") && ev.contains("port 111 is not in allowed_ports"),
            "{ev}"
        );
    }

    #[test]
    fn names_the_owning_process_when_it_can() {
        let t = fake();
        let p = t.path();
        std::fs::create_dir_all(p.join("812/fd")).unwrap();
        std::fs::write(p.join("812/comm"), "inetd\n").unwrap();
        std::os::unix::fs::symlink("/dev/null", p.join("812/fd/0")).unwrap();
        std::os::unix::fs::symlink("socket:[999]", p.join("812/fd/3")).unwrap();
        std::os::unix::fs::symlink("socket:[1004]", p.join("812/fd/4")).unwrap();
        // A process whose fd directory cannot be listed is skipped.
        std::fs::create_dir_all(p.join("813")).unwrap();
        std::fs::write(p.join("813/fd"), "").unwrap();
        let out = evaluate(&forbid(&[23, 111]), &ctx(p));
        assert!(
            out.evidence[0].starts_with("tcp 0.0.0.0:23 LISTEN by inetd[812] ("),
            "{out:?}"
        );
        assert!(out.evidence[1].starts_with("udp6 [::]:111 ("), "{out:?}");
    }

    #[test]
    fn missing_ipv6_tables_are_not_errors() {
        let t = fake();
        std::fs::remove_file(t.path().join("net/tcp6")).unwrap();
        std::fs::remove_file(t.path().join("net/udp6")).unwrap();
        let out = evaluate(&forbid(&[8080]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[1].ends_with("net/tcp6 does not exist (protocol disabled)"));
    }

    #[test]
    fn no_socket_table_at_all_is_an_error() {
        let t = fake();
        std::fs::remove_file(t.path().join("net/tcp")).unwrap();
        std::fs::remove_file(t.path().join("net/tcp6")).unwrap();
        let out = evaluate(&forbid(&[23]), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
        assert!(out.evidence[0].contains("no tcp socket table"), "{out:?}");
        let empty = tempfile::tempdir().unwrap();
        let out = evaluate(&forbid(&[23]), &ctx(empty.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
    }

    #[test]
    fn malformed_or_unreadable_tables_are_errors() {
        let t = fake();
        let p = t.path().join("net/udp");
        std::fs::write(&p, [HEAD.as_bytes(), b"   0: garbage\xff line\n"].concat()).unwrap();
        let out = evaluate(&forbid(&[23]), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
        assert!(out.evidence[0].ends_with("net/udp:2: not a socket table row"));
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let out = evaluate(&forbid(&[23]), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
    }

    #[test]
    fn evidence_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        let rows: Vec<String> = (0..120)
            .map(|i| {
                row(
                    i,
                    &format!("00000000:{:04X}", 1000 + i),
                    "00000000:0000",
                    "0A",
                    0,
                )
            })
            .collect();
        table(t.path(), "tcp", &rows);
        table(t.path(), "udp", &[]);
        let out = evaluate(&allow(&[22]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail);
        assert_eq!(out.evidence.len(), MAX_SHOWN + 1 + 2, "{out:?}");
        assert_eq!(out.evidence[MAX_SHOWN], "and 70 more");
    }

    #[test]
    fn no_proc_is_skipped() {
        let c = Ctx::new("/nonexistent-root", None);
        assert_eq!(evaluate(&forbid(&[23]), &c).status, Status::Skipped);
    }
}
