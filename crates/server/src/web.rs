//! The browser dashboard: static files embedded in the binary, served at `/` and `/ui/{file}`.
//!
//! The pages hold no secrets and need no token; every action they take goes through the REST
//! API with the token the user logs in with. `THUNDERHEAD_WEB_DIR` serves the files from a
//! directory instead, read at each request, for work on the dashboard itself.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The dashboard's files, `web/*`: name and text (listed by `build.rs`).
const ASSETS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The type a dashboard file is served as, by its extension; `None` for any other file.
fn content_type(name: &str) -> Option<&'static str> {
    if name.starts_with('.') || name.contains(['/', '\\']) {
        return None;
    }
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        _ => return None,
    })
}

/// Scripts and styles come only from the head node; nothing may frame the pages.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn router() -> Router {
    let from_disk = std::env::var_os("THUNDERHEAD_WEB_DIR").map(std::path::PathBuf::from);
    let index_dir = from_disk.clone();
    Router::new().route("/", get(move || std::future::ready(asset("index.html", index_dir.as_deref())))).route(
        "/ui/{file}",
        get(move |Path(file): Path<String>| std::future::ready(asset(&file, from_disk.as_deref()))),
    )
}

fn asset(name: &str, from_disk: Option<&std::path::Path>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such file in the dashboard").into_response();
    let Some(content_type) = content_type(name) else { return not_found() };
    // Embedded files are served from the binary as they are, without a copy.
    let body = match from_disk {
        None => match ASSETS.iter().find(|(n, _)| *n == name) {
            Some(&(_, text)) => axum::body::Body::from(text),
            None => return not_found(),
        },
        Some(dir) => match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => axum::body::Body::from(text),
            Err(_) => return not_found(),
        },
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // A new binary may bring new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_asset_is_served_with_its_type_and_the_policy() {
        for (name, _) in ASSETS {
            let r = asset(name, None);
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], content_type(name).expect("a dashboard file type"));
            assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        }
        assert_eq!(asset("../Cargo.toml", None).status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("secret.key", None).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_index_loads_only_files_the_head_node_serves() {
        let index = ASSETS.iter().find(|(n, _)| *n == "index.html").expect("the dashboard has an index").1;
        for reference in index.split("/ui/").skip(1) {
            let file = reference.split('"').next().unwrap();
            assert!(ASSETS.iter().any(|(n, _)| *n == file), "index.html loads /ui/{file}, which is not embedded");
        }
    }
}
