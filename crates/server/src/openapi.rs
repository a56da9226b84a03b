//! The API's description: a hand-written OpenAPI 3.0.3 document (`openapi.json` beside this
//! file), served at `GET /api/v1/openapi.json` without a token.
//!
//! [`ROUTES`] lists every route of the API router; the tests check that the document describes
//! exactly those routes and that `api.rs` routes exactly those, so a route added without its
//! description fails `cargo test`. `scripts/api-fuzz.sh` fuzzes a head node with the document.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The OpenAPI document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// `(method, path)` of every route under `/api/v1`, in axum's path syntax (`{*path}` is a
/// wildcard that may hold `/`; the document writes it `{path}`).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/health"),
    ("GET", PATH),
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("DELETE", "/api/v1/users/{name}"),
    ("POST", "/api/v1/users/{name}/token"),
    ("GET", "/api/v1/join-tokens"),
    ("POST", "/api/v1/join-tokens"),
    ("DELETE", "/api/v1/join-tokens/{id}"),
    ("POST", "/api/v1/nodes/{name}/revoke"),
    ("GET", "/api/v1/templates"),
    ("POST", "/api/v1/templates"),
    ("GET", "/api/v1/templates/{name}"),
    ("PATCH", "/api/v1/templates/{name}"),
    ("DELETE", "/api/v1/templates/{name}"),
    ("POST", "/api/v1/templates/{name}/validate"),
    ("POST", "/api/v1/templates/{name}/resume"),
    ("POST", "/api/v1/templates/{name}/orphans/remove"),
    ("GET", "/api/v1/providers"),
    ("GET", "/api/v1/providers/{name}"),
    ("GET", "/api/v1/nodes"),
    ("POST", "/api/v1/nodes"),
    ("POST", "/api/v1/nodes/actions"),
    ("GET", "/api/v1/nodes/{name}"),
    ("GET", "/api/v1/nodes/{name}/log"),
    ("GET", "/api/v1/nodes/{name}/tasks"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/cost"),
    ("GET", "/api/v1/cost/series"),
    ("GET", "/api/v1/packages"),
    ("POST", "/api/v1/packages/install"),
    ("GET", "/api/v1/packages/{name}"),
    ("PUT", "/api/v1/packages/{name}"),
    ("DELETE", "/api/v1/packages/{name}"),
    ("GET", "/api/v1/packages/{name}/download"),
    ("GET", "/api/v1/blobs"),
    ("POST", "/api/v1/jobs/reserve"),
    ("PUT", "/api/v1/jobs/{id}/inputs/{*path}"),
    ("GET", "/api/v1/jobs/{id}/outputs"),
    ("GET", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{id}"),
    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("POST", "/api/v1/jobs/{id}/requeue"),
    ("GET", "/api/v1/jobs/{id}/tasks"),
    ("GET", "/api/v1/jobs/{id}/tasks/{index}"),
];

/// Routes anyone may call, without a token.
pub const PUBLIC: &[&str] = &["/api/v1/health", PATH];

/// Serves the document. Merge it next to the API router (outside its token check).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(PATH, get(|| async { document() }))
}

fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    fn parsed() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// `{*path}` → `{path}`: OpenAPI has no wildcard parameters.
    fn openapi_path(axum_path: &str) -> String {
        axum_path.replace("{*", "{")
    }

    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("a path item is an object");
                item.keys()
                    .filter(|k| METHODS.contains(&k.as_str()))
                    .map(|m| (m.to_ascii_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn listed() -> BTreeSet<(String, String)> {
        ROUTES.iter().map(|(m, p)| (m.to_string(), openapi_path(p))).collect()
    }

    /// `(method, path)` of each `.route("/api/v1/…", get(..).post(..))` in api.rs's source.
    fn routed_by_api() -> BTreeSet<(String, String)> {
        let source = include_str!("api.rs");
        let mut routes = BTreeSet::new();
        for chunk in source.split(".route(").skip(1) {
            // rustfmt puts the path of a long route on a line of its own.
            let Some(rest) = chunk.trim_start().strip_prefix('"') else { continue };
            let (path, handlers) = rest.split_once('"').expect("a closing quote");
            if !path.starts_with("/api/v1") {
                continue;
            }
            let handlers = handlers.split(".fallback(").next().unwrap_or(handlers);
            for method in ["get", "post", "put", "patch", "delete"] {
                let call = format!("{method}(");
                let found = handlers.match_indices(&call).any(|(at, _)| {
                    handlers[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                });
                if found {
                    routes.insert((method.to_ascii_uppercase(), path.to_string()));
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_is_openapi_3_0_3() {
        let doc = parsed();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(doc["security"][0]["bearer"], Value::Array(vec![]));
    }

    #[test]
    fn the_document_describes_every_listed_route_and_no_other() {
        let (documented, listed) = (documented(&parsed()), listed());
        let undocumented: Vec<_> = listed.difference(&documented).collect();
        let unlisted: Vec<_> = documented.difference(&listed).collect();
        assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
        assert!(unlisted.is_empty(), "openapi.json describes routes ROUTES does not list: {unlisted:?}");
    }

    #[test]
    fn routes_lists_what_the_api_router_routes() {
        let routed = routed_by_api();
        let listed: BTreeSet<(String, String)> =
            ROUTES.iter().filter(|(_, p)| *p != PATH).map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert!(routed.len() > 20, "the scan of api.rs found only {routed:?}");
        let missing: Vec<_> = routed.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&routed).collect();
        assert!(missing.is_empty(), "api.rs routes these, ROUTES and openapi.json lack them: {missing:?}");
        assert!(stale.is_empty(), "ROUTES lists these, api.rs no longer routes them: {stale:?}");
    }

    #[test]
    fn only_health_and_the_document_are_public() {
        let doc = parsed();
        for (method, path) in listed() {
            let security = &doc["paths"][&path][method.to_ascii_lowercase()]["security"];
            let public = security.as_array().is_some_and(Vec::is_empty);
            assert_eq!(public, PUBLIC.contains(&path.as_str()), "{method} {path}: security {security}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.strip_prefix('#').unwrap_or(r);
                        if doc.pointer(pointer).is_none() {
                            bad.push(r.clone());
                        }
                    }
                    map.values().for_each(|v| walk(v, doc, bad));
                }
                Value::Array(list) => list.iter().for_each(|v| walk(v, doc, bad)),
                _ => {}
            }
        }
        let doc = parsed();
        let mut bad = vec![];
        walk(&doc, &doc, &mut bad);
        assert!(bad.is_empty(), "unresolved references: {bad:?}");
    }

    #[test]
    fn the_document_is_served_as_json() {
        let response = document();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
