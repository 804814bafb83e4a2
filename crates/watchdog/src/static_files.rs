//! `static` mode: files from `static_path`, never anything outside it.

use std::path::{Component, Path, PathBuf};

use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::body::Body;
use crate::reply::error_response;

pub struct StaticFiles {
    root: PathBuf,
}

impl StaticFiles {
    pub fn new(root: PathBuf) -> StaticFiles {
        StaticFiles { root }
    }

    pub async fn serve<B>(&self, req: &Request<B>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            let mut resp =
                error_response(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are allowed here");
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let path = req.uri().path();
        let Some(relative) = sanitize(path) else {
            return error_response(StatusCode::BAD_REQUEST, "invalid path");
        };
        let root = match tokio::fs::canonicalize(&self.root).await {
            Ok(root) => root,
            Err(e) => {
                tracing::error!(path = %self.root.display(), error = %e, "static_path is not readable");
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "static_path is not readable");
            }
        };
        let mut target = root.join(&relative);
        let mut meta = match tokio::fs::metadata(&target).await {
            Ok(meta) => meta,
            Err(_) => return not_found(),
        };
        if meta.is_dir() {
            if !path.ends_with('/') {
                // Relative links in the index only work below a trailing slash.
                let mut location = format!("{path}/");
                if let Some(q) = req.uri().query() {
                    location.push('?');
                    location.push_str(q);
                }
                let mut resp = Response::new(Body::empty());
                *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(LOCATION, v);
                }
                return resp;
            }
            target.push("index.html");
            meta = match tokio::fs::metadata(&target).await {
                Ok(meta) if meta.is_file() => meta,
                _ => return not_found(),
            };
        }
        // A symbolic link must not lead out of the folder.
        match tokio::fs::canonicalize(&target).await {
            Ok(real) if real.starts_with(&root) => {}
            _ => return not_found(),
        }
        if !meta.is_file() {
            return not_found();
        }

        let etag = etag(&meta);
        if let (Some(etag), Some(inm)) = (&etag, req.headers().get(IF_NONE_MATCH))
            && (inm.as_bytes() == etag.as_bytes() || inm == "*")
        {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            resp.headers_mut().insert(ETAG, etag.clone());
            return resp;
        }

        let body = if head {
            Body::empty()
        } else {
            match tokio::fs::File::open(&target).await {
                Ok(file) => Body::file(file, meta.len()),
                Err(_) => return not_found(),
            }
        };
        let mut resp = Response::new(body);
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&target)));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(meta.len()));
        if let Some(etag) = etag {
            headers.insert(ETAG, etag);
        }
        resp
    }
}

fn not_found() -> Response<Body> {
    error_response(StatusCode::NOT_FOUND, "not found")
}

/// Turns a URL path into a relative file path, or `None` if it tries to climb
/// out (`..`), has an encoded NUL or slash, or is not valid UTF-8.
fn sanitize(url_path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for segment in url_path.split('/') {
        let decoded = percent_decode(segment)?;
        if decoded.contains(['/', '\\', '\0']) {
            return None;
        }
        match Path::new(&decoded).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::Normal(part)) => out.push(part),
            Some(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn etag(meta: &std::fs::Metadata) -> Option<HeaderValue> {
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    HeaderValue::from_str(&format!("\"{:x}-{:x}\"", modified.as_nanos(), meta.len())).ok()
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_paths() {
        assert_eq!(sanitize("/"), Some(PathBuf::new()));
        assert_eq!(sanitize("/a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(sanitize("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(sanitize("//a//b/"), Some(PathBuf::from("a/b")));
        assert_eq!(sanitize("/a%20b"), Some(PathBuf::from("a b")));
        assert_eq!(sanitize("/../etc/passwd"), None);
        assert_eq!(sanitize("/a/%2e%2e/%2e%2e/etc"), None);
        assert_eq!(sanitize("/a%2fb"), None);
        assert_eq!(sanitize("/a%00"), None);
        assert_eq!(sanitize("/a%zz"), None);
        assert_eq!(sanitize("/a%ff"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("x/index.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
