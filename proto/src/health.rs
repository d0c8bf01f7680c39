//! The health endpoint both planes serve (`GET /healthz`) and a dependency-free probe of it, for
//! container health checks in images without a shell or curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Asks `GET /healthz` at `addr` (plain HTTP) and succeeds on a 200 within 3 s. An unspecified
/// address (0.0.0.0, [::]) is probed on loopback.
pub fn probe(addr: SocketAddr) -> Result<(), String> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("asking {addr}: {e}"))?;
    let mut head = [0u8; 32];
    let n = s
        .read(&mut head)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    status_is_ok(&head[..n]).then_some(()).ok_or_else(|| {
        format!(
            "{addr} answered {:?}",
            String::from_utf8_lossy(&head[..n])
                .lines()
                .next()
                .unwrap_or("")
        )
    })
}

/// Whether an HTTP response starts with a 200 status line.
fn status_is_ok(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.")
        && head.get(8..12) == Some(b" 200")
        && head.get(12).is_none_or(|b| !b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let cases: [(&[u8], bool); 6] = [
            (b"HTTP/1.1 200 OK\r\n", true),
            (b"HTTP/1.0 200 OK\r\n", true),
            (b"HTTP/1.1 503 Service Unavailable\r\n", false),
            (b"HTTP/1.1 2000", false),
            (b"", false),
            (b"SSH-2.0-OpenSSH", false),
        ];
        for (head, ok) in cases {
            assert_eq!(status_is_ok(head), ok, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn probes_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                &b"HTTP/1.1 200 OK\r\n\r\nok"[..],
                b"HTTP/1.1 500 Oops\r\n\r\n",
            ] {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 256];
                let n = c.read(&mut buf).unwrap();
                assert!(buf[..n].starts_with(b"GET /healthz "));
                c.write_all(answer).unwrap();
            }
        });
        assert_eq!(probe(addr), Ok(()));
        assert!(probe(addr).unwrap_err().contains("500"));
        server.join().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(probe(closed).unwrap_err().contains("connecting"));
    }
}
