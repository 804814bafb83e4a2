//! ferrofaas rust template: serves `handler::handle` over HTTP/1.1 on
//! 127.0.0.1:$PORT, in http mode behind the watchdog (which sends whole
//! bodies with a Content-Length), a thread per connection, keep-alive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use faas_fn::Request;

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("listen");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("GET").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let length: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let close = headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (target.clone(), String::new()),
        };
        let req = Request { method, path, query, headers, body };
        let res = std::panic::catch_unwind(|| handler::handle(&req)).unwrap_or_else(|_| faas_fn::Response {
            status: 500,
            headers: Vec::new(),
            body: b"the function panicked; see its logs\n".to_vec(),
        });
        let mut head = format!("HTTP/1.1 {} Status\r\n", res.status);
        for (k, v) in &res.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", res.body.len()));
        writer.write_all(head.as_bytes())?;
        writer.write_all(&res.body)?;
        if close {
            return Ok(());
        }
    }
}
