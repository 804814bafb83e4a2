//! The web UI at `/ui/`, built into the gateway binary: plain HTML, CSS
//! and JavaScript (four scripts, loaded in order) that call the gateway's own API (no other requests, no
//! build step). `/` redirects here.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::json_error;

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const FUNCTIONS: &str = include_str!("functions.js");
const FORMS: &str = include_str!("forms.js");
const USAGE: &str = include_str!("usage.js");
const STYLE: &str = include_str!("style.css");

/// `GET` of a path under `/ui/`, or of `/` and `/ui` (redirects).
pub fn serve(path: &str) -> Response<Body> {
    let (body, content_type) = match path {
        "/" | "/ui" => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::FOUND;
            resp.headers_mut().insert(LOCATION, HeaderValue::from_static("/ui/"));
            return resp;
        }
        "/ui/" | "/ui/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (APP, "text/javascript; charset=utf-8"),
        "/ui/functions.js" => (FUNCTIONS, "text/javascript; charset=utf-8"),
        "/ui/forms.js" => (FORMS, "text/javascript; charset=utf-8"),
        "/ui/usage.js" => (USAGE, "text/javascript; charset=utf-8"),
        "/ui/style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return json_error(StatusCode::NOT_FOUND, &format!("no page {path}")),
    };
    let mut resp = Response::new(Body::full(body));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The browser itself refuses anything but the gateway: no other
    // origin's scripts, styles, fonts or connections, no inline script.
    resp.headers_mut().insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    resp.headers_mut().insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_redirects() {
        assert_eq!(serve("/").status(), StatusCode::FOUND);
        assert_eq!(serve("/").headers()[LOCATION], "/ui/");
        assert_eq!(serve("/ui/").headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        for script in ["/ui/app.js", "/ui/functions.js", "/ui/usage.js", "/ui/forms.js"] {
            assert_eq!(serve(script).status(), StatusCode::OK, "{script}");
            assert!(INDEX.contains(&format!("<script src=\"{script}\">")), "index.html loads {script}");
        }
        assert_eq!(serve("/ui/nothing").status(), StatusCode::NOT_FOUND);
        assert!(
            serve("/ui/").headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self';")
        );
    }

    #[test]
    fn no_request_leaves_the_gateway() {
        for asset in [INDEX, APP, FUNCTIONS, FORMS, STYLE] {
            // SVG's namespace name is an identifier, never fetched.
            let asset = asset.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!asset.contains("http://") && !asset.contains("https://") && !asset.contains("//cdn"));
            assert!(!asset.contains("@import") && !asset.contains("url("), "no stylesheet fetches");
        }
    }
}
