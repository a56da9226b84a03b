//! The paths of the head node's API, built in one place.
//!
//! A *segment* is one step of a path (`templates`, a template's name, `nodes`); a *query* is the
//! `?key=value&…` after it. Every segment and every query key and value is percent-escaped here:
//! each byte but the unreserved `A-Z a-z 0-9 - . _ ~` is written `%XX`, and a segment of only
//! dots is escaped too, so no name can climb to another route. Names the head node accepts are
//! unreserved characters only, so for them the path is the name itself; a bad name reaches the
//! route it was meant for and is refused there.
//!
//! The client's requests take an [`ApiPath`], not a string, so no request is built by hand.

use std::fmt::{Display, Write};

/// A path under `/api/v1/`, with its query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPath {
    path: String,
    query: String,
}

impl ApiPath {
    /// The path of a resource: `ApiPath::new("templates")` is `/api/v1/templates`.
    pub fn new(resource: &str) -> ApiPath {
        ApiPath { path: "/api/v1".into(), query: String::new() }.segment(resource)
    }

    /// One more step of the path: a name, an id, or a word of the API such as `log`.
    pub fn segment(mut self, segment: impl Display) -> ApiPath {
        let segment = segment.to_string();
        self.path.push('/');
        if !segment.is_empty() && segment.bytes().all(|b| b == b'.') {
            // `.` and `..` would be taken as steps up by whatever normalizes the path.
            self.path.push_str(&"%2E".repeat(segment.len()));
        } else {
            escape_into(&mut self.path, &segment);
        }
        self
    }

    /// A query parameter `key=value`.
    pub fn query(mut self, key: &str, value: impl Display) -> ApiPath {
        self.query.push(if self.query.is_empty() { '?' } else { '&' });
        escape_into(&mut self.query, key);
        self.query.push('=');
        escape_into(&mut self.query, &value.to_string());
        self
    }

    /// A query parameter if there is a value, else none.
    pub fn query_opt(self, key: &str, value: Option<impl Display>) -> ApiPath {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }
}

impl Display for ApiPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.path, self.query)
    }
}

/// Appends `text` to `out` with every byte but the unreserved ones written `%XX`.
fn escape_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").expect("writing to a string");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_unchanged() {
        let p = ApiPath::new("templates").segment("Burst-1_a.b~c").segment("validate");
        assert_eq!(p.to_string(), "/api/v1/templates/Burst-1_a.b~c/validate");
        assert_eq!(ApiPath::new("jobs").segment(17).segment("tasks").segment(3).to_string(), "/api/v1/jobs/17/tasks/3");
        assert_eq!(ApiPath::new("join-tokens").to_string(), "/api/v1/join-tokens");
    }

    #[test]
    fn a_name_cannot_address_another_route() {
        let p = ApiPath::new("templates").segment("a/b?c#d%e f\u{e9}\u{1F680}");
        assert_eq!(p.to_string(), "/api/v1/templates/a%2Fb%3Fc%23d%25e%20f%C3%A9%F0%9F%9A%80");
        assert_eq!(ApiPath::new("users").segment("../templates").to_string(), "/api/v1/users/..%2Ftemplates");
        assert_eq!(ApiPath::new("users").segment("..").segment("x").to_string(), "/api/v1/users/%2E%2E/x");
        assert_eq!(ApiPath::new("users").segment(".").to_string(), "/api/v1/users/%2E");
    }

    #[test]
    fn query_values_are_escaped() {
        let p = ApiPath::new("packages").segment("tools").query("file", "a b&c=d+e.zip").query("template", "t/1");
        assert_eq!(p.to_string(), "/api/v1/packages/tools?file=a%20b%26c%3Dd%2Be.zip&template=t%2F1");
        let q = ApiPath::new("blobs").query("location", "thunderhead:jobs/3/0/out#1");
        assert_eq!(q.to_string(), "/api/v1/blobs?location=thunderhead%3Ajobs%2F3%2F0%2Fout%231");
    }

    #[test]
    fn absent_query_values_are_left_out() {
        let p = ApiPath::new("nodes").query_opt("template", None::<&str>);
        assert_eq!(p.to_string(), "/api/v1/nodes");
        let p = ApiPath::new("cost").query_opt("template", Some("t")).query_opt("job", Some(4));
        assert_eq!(p.to_string(), "/api/v1/cost?template=t&job=4");
    }
}
