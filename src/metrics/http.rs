//! A minimal HTTP/1.1 server for `GET /metrics`: a thread per connection, at most
//! [`MAX_CONNS`] at once (a scraper asks every few seconds; idle or trickling connections must
//! not keep it waiting), the request head read within 5 s and 8 KiB, the answer with its
//! length and `Connection: close`. Anything but GET or HEAD of /metrics gets a
//! 404 or 405. The body is made at each request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What a scrape answers: the exposition, made when asked.
pub(crate) type Body = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The largest request head read.
const MAX_HEAD: usize = 8192;
/// Connections served at once; one more is closed at once. A handful of idle connections held
/// open by a local user could otherwise keep every scrape waiting past its timeout.
const MAX_CONNS: usize = 32;

/// Binds `addr`, refusing an address other hosts can reach unless `public`.
pub(crate) fn bind(addr: &str, public: bool) -> Result<TcpListener, String> {
    let sa: SocketAddr = addr.parse().map_err(|_| {
        format!("--metrics {addr}: not an ADDRESS:PORT (127.0.0.1:9842, [::1]:9842)")
    })?;
    if !sa.ip().is_loopback() && !public {
        return Err(format!(
            "--metrics {addr}: not a loopback address, so other hosts could read the metrics; add --metrics-public to mean it"
        ));
    }
    TcpListener::bind(sa).map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))
}

/// Serves `body` on `listener` from a thread of its own, for as long as the process lives.
pub(crate) fn serve(listener: TcpListener, body: Body) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("nsfw-metrics".into())
        .spawn(move || {
            let open = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNS {
                            open.fetch_sub(1, Ordering::SeqCst);
                            continue; // dropped: closed at once
                        }
                        let (body, mine) = (body.clone(), open.clone());
                        let spawned = std::thread::Builder::new()
                            .name("nsfw-metrics-conn".into())
                            .spawn(move || {
                                answer(s, &body);
                                mine.fetch_sub(1, Ordering::SeqCst);
                            });
                        if spawned.is_err() {
                            open.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    // A connection that failed before we took it (reset): next.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
        .map(|_| ())
}

/// The request line of a head, if the head is complete.
fn request_line(head: &[u8]) -> Option<String> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&head[..end]);
    text.lines().next().map(str::to_string)
}

/// Status line and body for a request line.
pub(crate) fn route(line: &str, body: &dyn Fn() -> String) -> (&'static str, String, bool) {
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", body(), method == "HEAD"),
        (_, "/metrics") => ("405 Method Not Allowed", "only GET\n".into(), false),
        _ => ("404 Not Found", "nsfw serves /metrics\n".into(), false),
    }
}

fn answer(mut s: TcpStream, body: &Body) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // A client trickling a byte at a time would hold the only connection: the whole head
    // must come within the deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        if let Some(l) = request_line(&head) {
            break l;
        }
        if std::time::Instant::now() > deadline {
            return;
        }
        if head.len() > MAX_HEAD {
            let _ = s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let (status, text, head_only) = route(&line, &**body);
    let kind = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    let _ = s.write_all(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle connections held open (a local user's, or a stuck client's) never keep a scrape
    /// waiting: each connection has a thread of its own.
    #[test]
    fn idle_connections_do_not_hold_up_a_scrape() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        serve(listener, Arc::new(|| "nsfw_up 1\n".to_string())).expect("serve");
        let idle: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let t = std::time::Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("answer");
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(got.ends_with("nsfw_up 1\n"), "{got}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a scrape waited {:?} behind idle connections",
            t.elapsed()
        );
        drop(idle);
    }

    #[test]
    fn only_get_and_head_of_metrics_are_served() {
        let body = || "x 1\n".to_string();
        assert_eq!(
            route("GET /metrics HTTP/1.1", &body),
            ("200 OK", "x 1\n".into(), false)
        );
        assert_eq!(route("GET /metrics?a=b HTTP/1.1", &body).0, "200 OK");
        assert!(route("HEAD /metrics HTTP/1.1", &body).2);
        assert_eq!(
            route("POST /metrics HTTP/1.1", &body).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route("GET / HTTP/1.1", &body).0, "404 Not Found");
        assert_eq!(route("", &body).0, "404 Not Found");
    }

    #[test]
    fn other_hosts_are_refused_unless_public() {
        assert!(
            bind("192.0.2.1:9842", false)
                .unwrap_err()
                .contains("--metrics-public")
        );
        assert!(
            bind("nonsense", false)
                .unwrap_err()
                .contains("ADDRESS:PORT")
        );
        assert!(bind("127.0.0.1:0", false).is_ok());
    }
}
