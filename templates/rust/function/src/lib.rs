use faas_fn::{Request, Response};

pub fn handle(req: &Request) -> Response {
    let text = req.text();
    let name = if text.trim().is_empty() { "world" } else { text.trim() };
    Response::ok(format!("Hello, {name}, from Rust!\n")).with_header("Content-Type", "text/plain")
}
