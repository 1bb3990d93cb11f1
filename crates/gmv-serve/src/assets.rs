//! The scoreboard page, compiled into the binary: one HTML file, one
//! stylesheet, one script, no fonts or libraries from anywhere else, so a
//! stage display works on a network with no way out. The page's
//! Content-Security-Policy holds it to that.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// `GET /`.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// `GET /assets/scoreboard.css`.
pub const SCOREBOARD_CSS: &str = include_str!("../assets/scoreboard.css");
/// `GET /assets/scoreboard.js`.
pub const SCOREBOARD_JS: &str = include_str!("../assets/scoreboard.js");

/// Everything from this server, nothing from elsewhere. Styles set from the
/// script go through the CSSOM, which `style-src 'self'` allows.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file as a response. `no-cache` lets browsers keep it but
/// revalidate, so a new binary's page is picked up on reload.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(crate) async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

pub(crate) async fn css() -> Response {
    asset("text/css; charset=utf-8", SCOREBOARD_CSS)
}

pub(crate) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", SCOREBOARD_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("scoreboard.css", SCOREBOARD_CSS),
            ("scoreboard.js", SCOREBOARD_JS),
        ] {
            // The SVG namespace is an identifier and `url(#id)` a reference
            // inside the page; neither is a fetch.
            let text = text
                .replace("http://www.w3.org/2000/svg", "")
                .replace("url(#", "");
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(needle), "{name} mentions {needle}");
            }
        }
        assert!(
            INDEX_HTML.contains("/assets/scoreboard.js")
                && INDEX_HTML.contains("/assets/scoreboard.css")
        );
    }
}
