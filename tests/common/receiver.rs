//! A test HTTP receiver standing in for a SIEM or a webhook endpoint:
//! HTTPS on loopback (port 0) with the fleet PKI's `localhost`
//! certificate. It records every request, answers the first `fail_first`
//! with 503, and leaves requests from `hang_from` on unanswered (what a
//! receiver dying mid-request looks like to the sender).

use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as received, and what it was answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered; `None`: never answered.
    pub status: Option<u16>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Default)]
pub struct Behaviour {
    /// Answer this many requests (the first ones) with 503.
    pub fail_first: usize,
    /// Leave requests from this index on unanswered (0: none).
    pub hang_from: Option<usize>,
    /// The body of a 200 answer.
    pub answer: String,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Receiver {
    pub fn start(tls: Arc<ServerConfig>, behaviour: Behaviour) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (reqs, beh) = (requests.clone(), behaviour.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, reqs, beh) = (acceptor.clone(), reqs.clone(), beh.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some((path, headers, body)) = read_request(&mut s).await else {
                        return;
                    };
                    let i = {
                        let mut r = reqs.lock().unwrap();
                        r.push(Request {
                            path,
                            headers,
                            body,
                            status: None,
                        });
                        r.len() - 1
                    };
                    let (status, answer) = {
                        let b = beh.lock().unwrap();
                        if i < b.fail_first {
                            (503, "busy".to_string())
                        } else if b.hang_from.is_some_and(|h| i >= h) {
                            (0, String::new())
                        } else {
                            (200, b.answer.clone())
                        }
                    };
                    if status == 0 {
                        // Unanswered until the sender gives up or dies.
                        let mut buf = [0u8; 64];
                        let _ = s.read(&mut buf).await;
                        return;
                    }
                    reqs.lock().unwrap()[i].status = Some(status);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        answer.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Receiver {
            addr,
            requests,
            behaviour,
            rt: Some(rt),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests so far (panics after `limit`).
    pub fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Request]) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done(&self.requests()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "receiver: {what} did not happen within {limit:?}; {} requests",
            self.requests().len()
        );
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}
