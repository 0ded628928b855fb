//! A constant-memory HTTP/1.1 client for the benchmarks (standard library
//! only; `rustc -O bench/client.rs -o bench/out/client`): it reads bodies
//! as a streaming consumer does, 64 KiB at a time, counting lines and
//! keeping nothing, so that a body of any size is received at the pace the
//! service sends it (a client that holds a whole window in memory, as
//! Python's `read()` does, is slower than the service on large bodies).
//!
//!   client window URL TOKEN ACCEPT            "rows seconds"
//!   client feed URL TOKEN ACCEPT ROWS         follows `Link: rel="next"` from URL until ROWS
//!                                             records came, on one keep-alive connection:
//!                                             "rows seconds pages ttfb_ms_p50 body_seconds"
//!
//! Rows are the body's lines, less a CSV header line; NDJSON lines are
//! records. Only `http://127.0.0.1:PORT/...` URLs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::exit;
use std::time::Instant;

fn fail(message: &str) -> ! {
    eprintln!("client: {message}");
    exit(1)
}

/// `http://host:port/path?query` -> ("host:port", "/path?query").
fn split(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| fail("only http:// URLs"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

struct Response {
    status: u16,
    next: Option<String>,
    lines: u64,
}

/// Sends a GET and reads its answer: the time its headers came, and the
/// body's lines.
fn get(
    conn: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
    token: &str,
    accept: &str,
) -> (Response, Instant) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\n\r\n"
    );
    conn.get_mut()
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| fail(&format!("send: {e}")));
    let mut line = String::new();
    let read_line = |conn: &mut BufReader<TcpStream>, line: &mut String| {
        line.clear();
        match conn.read_line(line) {
            Ok(0) | Err(_) => fail("the connection closed"),
            Ok(_) => {}
        }
    };
    read_line(conn, &mut line);
    let headed = Instant::now();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(&format!("bad status line {line:?}")));
    let (mut chunked, mut length, mut next) = (false, None, None);
    loop {
        read_line(conn, &mut line);
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.parse::<u64>().ok(),
            "link" => {
                for part in value.split(", ") {
                    if part.ends_with("rel=\"next\"") {
                        if let (Some(a), Some(b)) = (part.find('<'), part.find('>')) {
                            next = Some(part[a + 1..b].to_owned());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut buffer = vec![0u8; 1 << 16];
    let mut lines = 0u64;
    let mut take = |conn: &mut BufReader<TcpStream>, mut left: u64| {
        while left > 0 {
            let want = left.min(buffer.len() as u64) as usize;
            let got = conn
                .read(&mut buffer[..want])
                .unwrap_or_else(|e| fail(&format!("read: {e}")));
            if got == 0 {
                fail("the body ended early");
            }
            lines += buffer[..got].iter().filter(|&&b| b == b'\n').count() as u64;
            left -= got as u64;
        }
    };
    if chunked {
        loop {
            read_line(conn, &mut line);
            let size = u64::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| fail(&format!("bad chunk size {line:?}")));
            if size == 0 {
                read_line(conn, &mut line); // the empty line after the last chunk
                break;
            }
            take(conn, size);
            read_line(conn, &mut line); // CRLF after the chunk
        }
    } else {
        take(conn, length.unwrap_or(0));
    }
    (
        Response {
            status,
            next,
            lines,
        },
        headed,
    )
}

fn connect(host: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(host).unwrap_or_else(|e| fail(&format!("connect: {e}")));
    let _ = stream.set_nodelay(true);
    BufReader::with_capacity(1 << 16, stream)
}

fn records(lines: u64, accept: &str) -> u64 {
    if accept == "text/csv" {
        lines.saturating_sub(1)
    } else {
        lines
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("window") if args.len() == 5 => {
            let (host, path) = split(&args[2]);
            let mut conn = connect(&host);
            let start = Instant::now();
            let (response, _) = get(&mut conn, &host, &path, &args[3], &args[4]);
            if response.status != 200 {
                fail(&format!("GET {}: {}", args[2], response.status));
            }
            let rows = records(response.lines, &args[4]);
            println!("{rows} {:.3}", start.elapsed().as_secs_f64());
        }
        Some("feed") if args.len() == 6 => {
            let wanted: u64 = args[5].parse().unwrap_or_else(|_| fail("ROWS: a number"));
            let (host, mut path) = split(&args[2]);
            let mut conn = connect(&host);
            let (mut got, mut pages, mut body) = (0u64, 0u64, 0f64);
            let mut waits = Vec::new();
            let start = Instant::now();
            while got < wanted {
                let asked = Instant::now();
                let (response, headed) = get(&mut conn, &host, &path, &args[3], &args[4]);
                body += headed.elapsed().as_secs_f64();
                waits.push(headed.duration_since(asked).as_secs_f64() * 1000.0);
                if response.status != 200 {
                    fail(&format!("GET {path}: {}", response.status));
                }
                let n = records(response.lines, &args[4]);
                if n == 0 {
                    fail(&format!("the feed ended after {got} records"));
                }
                got += n;
                pages += 1;
                let next = response
                    .next
                    .unwrap_or_else(|| fail("no next link"));
                path = split(&next).1;
            }
            let elapsed = start.elapsed().as_secs_f64();
            waits.sort_by(f64::total_cmp);
            let p50 = waits[waits.len() / 2];
            println!("{got} {elapsed:.3} {pages} {p50:.2} {body:.3}");
        }
        _ => fail("usage: client window URL TOKEN ACCEPT | client feed URL TOKEN ACCEPT ROWS"),
    }
}
