//! What the function prints goes to the watchdog's own output, line by line,
//! prefixed with the time and the stream it came from (`prefix_logs`).

use std::io::Write;
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines longer than this are split, so a function cannot make the watchdog
/// buffer without bound.
const MAX_LINE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Copies `reader` to the watchdog's stdout or stderr (as `stream` says) line by
/// line until end of file.
pub async fn forward_lines(mut reader: impl AsyncRead + Unpin, stream: Stream, prefix: bool) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            write_line(stream, prefix, &buf[start..start + pos]);
            start += pos + 1;
        }
        buf.drain(..start);
        if buf.len() >= MAX_LINE {
            write_line(stream, prefix, &buf);
            buf.clear();
        }
    }
    if !buf.is_empty() {
        write_line(stream, prefix, &buf);
    }
}

fn write_line(stream: Stream, prefix: bool, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = Vec::with_capacity(line.len() + 40);
    if prefix {
        out.extend_from_slice(ferrofaas_types::time::format(SystemTime::now(), false).as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b": ");
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    // A log that cannot be written is dropped: the function must not stall.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(&out),
        Stream::Stderr => std::io::stderr().lock().write_all(&out),
    };
}
