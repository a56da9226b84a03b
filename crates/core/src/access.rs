//! Who may do what: users, their roles, and what each API route asks of its caller.
//!
//! Roles follow HPC Pack's: a `User` submits, views and cancels their own jobs and reads the
//! cluster (nodes, templates, providers, packages, cost); a `JobAdministrator` also manages every
//! user's jobs; an `Administrator` also manages templates, nodes, packages and users. Tokens are
//! checked by the head node's shell (it holds the hashes); this module decides, given a caller,
//! whether a request is allowed.

use crate::{Error, Millis, Result};

/// The prefix of keys in the head node's own blob store.
pub const LOCAL_STORE: &str = "thunderhead:";

/// Where a job's staged files live in the blob store.
pub fn job_area(job: crate::JobId) -> String {
    format!("jobs/{job}")
}
use serde::{Deserialize, Serialize};

/// The user the head node creates on first start; its token is in `access.json`.
pub const ADMIN: &str = "admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    User,
    JobAdministrator,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::JobAdministrator, Role::Administrator];

    pub fn name(self) -> &'static str {
        match self {
            Role::User => "User",
            Role::JobAdministrator => "JobAdministrator",
            Role::Administrator => "Administrator",
        }
    }

    /// Reads a role name, in any case.
    pub fn parse(text: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.name().eq_ignore_ascii_case(text)).ok_or_else(|| {
            Error::invalid(format!("role \"{text}\" is not known (use User, JobAdministrator or Administrator)"))
        })
    }
}

/// A user as the head node stores it: the token itself is never kept, only a salted hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// The public part of the token, by which it is looked up.
    pub token_id: String,
    /// Hex of the random salt and of SHA-256(salt ‖ secret part of the token).
    pub token_salt: String,
    pub token_hash: String,
    pub created_at: Millis,
}

/// What the API shows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView { name: u.name.clone(), role: u.role, created_at: u.created_at }
    }
}

/// The user a request acts for, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone, without a token (health, the API description).
    Public,
    /// Agents, which prove themselves at the connection, not with an API token.
    Agent,
    /// Any user with a valid token; job routes check ownership on top.
    User,
    /// An Administrator.
    Administrator,
}

/// What the route `route` (the path pattern, as the router knows it) asks for `method`.
/// Routes not listed here need an Administrator, so a new route is closed until it is listed.
pub fn need(method: &str, route: &str) -> Need {
    let read = method == "GET" || method == "HEAD";
    match route {
        // The join token in the body is the credential.
        "/api/v1/health" | "/api/v1/openapi.json" | "/agent/v1/join" => Need::Public,
        r if r.starts_with("/agent/") => Need::Agent,
        "/api/v1/whoami" => Need::User,
        r if r.starts_with("/api/v1/jobs") => Need::User,
        "/api/v1/blobs" if read => Need::User,
        "/api/v1/templates"
        | "/api/v1/templates/{name}"
        | "/api/v1/providers"
        | "/api/v1/providers/{name}"
        | "/api/v1/nodes"
        | "/api/v1/nodes/{name}"
        | "/api/v1/nodes/{name}/log"
        | "/api/v1/nodes/{name}/tasks"
        | "/api/v1/events"
        | "/api/v1/cost"
        | "/api/v1/cost/series"
        | "/api/v1/packages"
        | "/api/v1/packages/{name}"
        | "/api/v1/packages/{name}/download"
            if read =>
        {
            Need::User
        }
        _ => Need::Administrator,
    }
}

impl Caller {
    /// Whether this caller's role covers `need`.
    pub fn allow(&self, need: Need, method: &str, route: &str) -> Result<()> {
        match need {
            Need::Administrator if self.role != Role::Administrator => Err(Error::forbidden(format!(
                "{method} {route} needs the Administrator role; {} is a {} (ask an Administrator)",
                self.name,
                self.role.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether this caller may view and change a job `owner` submitted.
    pub fn may_manage_job(&self, owner: &str) -> bool {
        self.role >= Role::JobAdministrator || self.name == owner
    }

    /// Refuses acting on job `id` of `owner` unless [`Caller::may_manage_job`].
    pub fn check_job(&self, id: crate::JobId, owner: &str) -> Result<()> {
        if self.may_manage_job(owner) {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "job {id} belongs to {owner}; a User acts only on their own jobs (ask a JobAdministrator)"
        )))
    }
}

/// What a caller does with a file of the head node's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse {
    Read,
    Write,
}

/// Whose area a key of the head node's store lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreArea {
    /// `jobs/ID/…`: the files of job `ID`.
    Job(crate::JobId),
    /// `packages/…`: packages, which every user may read and only package upload writes.
    Packages,
    /// Anything else: the administrators' own files.
    Other,
}

/// The area `key` (a key of the head node's store, without `thunderhead:`) lies in, or why it is
/// no key. A job's number must be written out: `jobs/*/…` would reach every job of a sweep.
pub fn store_area(key: &str) -> Result<StoreArea> {
    let bad = |rule: &str| {
        Err(Error::invalid(format!(
            "location \"thunderhead:{}\" {rule} (write thunderhead:jobs/ID/PATH for a job's files)",
            crate::text::escape(key)
        )))
    };
    if key.is_empty() || key.starts_with('/') || key.split('/').any(|p| p == ".." || p == ".") {
        return bad("is not a key in the head node's store");
    }
    if key.chars().any(char::is_control) {
        return bad("holds a control character");
    }
    let mut parts = key.split('/');
    Ok(match (parts.next(), parts.next()) {
        // Written out plainly (no `*`, sign or leading zero), and closed by a `/`: a prefix
        // `jobs/4` would run on into `jobs/42/…`.
        (Some("jobs"), Some(text)) => match (text.parse::<crate::JobId>(), parts.next()) {
            (Ok(id), Some(_)) if id.to_string() == text => StoreArea::Job(id),
            (Ok(_), None) => return bad("names a job but not its area (end it with a /: thunderhead:jobs/ID/)"),
            _ => return bad("names no job by its number"),
        },
        (Some("jobs"), None) => return bad("names no job by its number"),
        (Some("packages"), _) => StoreArea::Packages,
        _ => StoreArea::Other,
    })
}

/// The one ownership check of the head node's store, for every path into it: the blob route,
/// job inputs staged in, job outputs staged out, uploads into a job's area. `owner` is the owner
/// of the job whose area `key` lies in, when it has one (or whoever reserved its id).
/// A User reads and writes only their own jobs' files and reads packages; JobAdministrators
/// and Administrators reach every job's files and the administrators' area; nobody writes
/// packages this way.
pub fn check_store_key(caller: &Caller, key: &str, use_: FileUse, owner: Option<&str>) -> Result<()> {
    let shown = crate::text::escape(key);
    match (store_area(key)?, use_) {
        (StoreArea::Packages, FileUse::Read) => Ok(()),
        (StoreArea::Packages, FileUse::Write) => Err(Error::forbidden(format!(
            "location \"thunderhead:{shown}\" is in the package area, which only package upload writes"
        ))),
        (StoreArea::Job(id), _) => match owner {
            Some(owner) if caller.may_manage_job(owner) => Ok(()),
            Some(_) => Err(Error::forbidden(format!(
                "location \"thunderhead:{shown}\" holds the files of job {id}, which is not yours; a User reaches \
                 only their own jobs' files (ask a JobAdministrator)"
            ))),
            None if caller.role >= Role::JobAdministrator => Ok(()),
            None => Err(Error::forbidden(format!(
                "location \"thunderhead:{shown}\" holds the files of job {id}, which is not yours (no such job, or \
                 its id was not reserved by you)"
            ))),
        },
        (StoreArea::Other, _) if caller.role >= Role::JobAdministrator => Ok(()),
        (StoreArea::Other, _) => Err(Error::forbidden(format!(
            "location \"thunderhead:{shown}\" is outside your jobs' files; a User reaches only \
             thunderhead:jobs/ID/… of their own jobs, and reads packages (ask a JobAdministrator)"
        ))),
    }
}

/// A join token as the head node stores it (a salted hash, like API tokens). Agents present it
/// once, to get their node certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    pub id: String,
    /// Only nodes of this template may join with it; `None`: any node name (on-premises nodes).
    pub template: Option<String>,
    pub expires_at: Millis,
    pub token_salt: String,
    pub token_hash: String,
    pub created_at: Millis,
}

/// What the API shows of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenView {
    pub id: String,
    pub template: Option<String>,
    pub expires_at: Millis,
    pub created_at: Millis,
}

impl From<&JoinTokenRecord> for JoinTokenView {
    fn from(t: &JoinTokenRecord) -> Self {
        JoinTokenView {
            id: t.id.clone(),
            template: t.template.clone(),
            expires_at: t.expires_at,
            created_at: t.created_at,
        }
    }
}

/// What the head node knows of a name an agent asks to join as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameAtJoin {
    /// The template of the node of that name (a burst node), if there is such a node.
    pub template: Option<String>,
    /// Whether that burst node is being deployed (Provisioning) right now.
    pub deploying: bool,
    /// Whether a certificate the head node issued for that name is still honoured.
    pub certified: bool,
}

impl JoinTokenRecord {
    /// Whether an agent named `node` may join with this token at `now`; the error says why not.
    ///
    /// A join never takes a name that is already someone's: a burst node joins only with its
    /// template's token while it is being deployed (its deployment hands it that token), and a
    /// name that still holds an honoured certificate joins again only after an administrator
    /// revokes it (`thunderhead node revoke NAME`); the agent that holds it needs no join. A
    /// deployment revokes its node's certificates before it starts, so the first join of a
    /// deployment is the only one.
    pub fn admits(&self, node: &str, name: &NameAtJoin, now: Millis) -> Result<()> {
        if now >= self.expires_at {
            return Err(Error::unauthorized(format!(
                "join token {} expired (ask an Administrator for a new one: thunderhead token create)",
                self.id
            )));
        }
        match (&self.template, &name.template) {
            (Some(t), node_template) if node_template.as_deref() != Some(t.as_str()) => {
                return Err(Error::forbidden(format!(
                    "join token {} is for nodes of template {t}, and {node} is not one (use a token of its template, or a cluster token)",
                    self.id
                )));
            }
            (None, Some(t)) => {
                return Err(Error::forbidden(format!(
                    "node {node} is a burst node of template {t}: only its own deployment joins it (start it: \
                     thunderhead node start {node}); join this machine under another name"
                )));
            }
            _ => {}
        }
        if name.template.is_some() && !name.deploying {
            return Err(Error::forbidden(format!(
                "node {node} is a burst node that is not being deployed now: only its deployment joins it (start it: \
                 thunderhead node start {node})"
            )));
        }
        if name.template.is_some() && name.certified {
            return Err(Error::forbidden(format!(
                "node {node} is a burst node whose deployment has joined already: an agent joins it once per \
                 deployment (start it again to deploy it anew)"
            )));
        }
        if name.template.is_none() && name.certified {
            return Err(Error::forbidden(format!(
                "node {node} already joined and its certificate is honoured: an agent joins under that name again \
                 only after an Administrator revokes it (thunderhead node revoke {node}); or join under another name"
            )));
        }
        Ok(())
    }
}

/// A node certificate the head node issued, by the SHA-256 of its DER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertRecord {
    pub fingerprint: String,
    pub node: String,
    pub issued_at: Millis,
    /// Revoked certificates are refused; a node's newer certificate revokes its older ones.
    pub revoked: bool,
}

/// User names: 1 to 64 of `a-z A-Z 0-9 . _ -`, starting with a letter or digit.
pub fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "user name \"{}\" is not allowed (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)",
        crate::text::escape(name)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller { name: "alice".into(), role }
    }

    #[test]
    fn the_store_is_reached_only_through_the_owners_areas() {
        let (user, jobadmin) = (caller(Role::User), caller(Role::JobAdministrator));
        let read = FileUse::Read;
        check_store_key(&user, "jobs/4/inputs/a.txt", read, Some("alice")).unwrap();
        check_store_key(&user, "jobs/4/1/out.csv", FileUse::Write, Some("alice")).unwrap();
        check_store_key(&user, "packages/solver/1/solver.tar.gz", read, None).unwrap();
        for (key, use_, owner) in [
            ("jobs/5/inputs/a.txt", read, Some("bob")),
            ("jobs/5/1/out.csv", FileUse::Write, Some("bob")),
            ("jobs/6/x", read, None),
            ("jobs/*/inputs/a.txt", read, Some("alice")),
            ("jobs/05/x", read, Some("alice")),
            ("uploads/x", read, None),
            ("packages/p/1/p.tar", FileUse::Write, None),
            ("jobs/4/../5/x", read, Some("alice")),
            ("jobs/4", FileUse::Write, Some("alice")),
            ("", read, None),
        ] {
            assert!(check_store_key(&user, key, use_, owner).is_err(), "{key} {use_:?} {owner:?}");
        }
        check_store_key(&jobadmin, "jobs/5/inputs/a.txt", read, Some("bob")).unwrap();
        check_store_key(&jobadmin, "shared/x", FileUse::Write, None).unwrap();
        assert!(check_store_key(&jobadmin, "packages/p", FileUse::Write, None).is_err());
        let e = check_store_key(&user, "jobs/5/inputs/a.txt", read, Some("bob")).unwrap_err();
        assert!(e.message.contains("job 5") && e.kind == crate::ErrorKind::Forbidden, "{}", e.message);
    }

    #[test]
    fn roles_parse_in_any_case_and_name_the_choices_when_wrong() {
        assert_eq!(Role::parse("jobadministrator").unwrap(), Role::JobAdministrator);
        let e = Role::parse("root").unwrap_err();
        assert!(e.message.contains("\"root\"") && e.message.contains("JobAdministrator"), "{}", e.message);
    }

    #[test]
    fn reads_are_open_to_users_and_changes_to_administrators() {
        assert_eq!(need("GET", "/api/v1/templates"), Need::User);
        assert_eq!(need("POST", "/api/v1/templates"), Need::Administrator);
        assert_eq!(need("POST", "/api/v1/nodes/actions"), Need::Administrator);
        assert_eq!(need("PUT", "/api/v1/packages/{name}"), Need::Administrator);
        assert_eq!(need("GET", "/api/v1/users"), Need::Administrator);
        assert_eq!(need("GET", "/api/v1/providers/{name}"), Need::User);
        assert_eq!(need("POST", "/api/v1/jobs"), Need::User);
        assert_eq!(need("POST", "/api/v1/jobs/{id}/cancel"), Need::User);
        assert_eq!(need("GET", "/api/v1/health"), Need::Public);
        assert_eq!(need("GET", "/agent/v1"), Need::Agent);
        assert_eq!(need("POST", "/agent/v1/join"), Need::Public);
        assert_eq!(need("POST", "/api/v1/join-tokens"), Need::Administrator);
        assert_eq!(need("POST", "/api/v1/nodes/{name}/revoke"), Need::Administrator);
        // A route nobody listed is closed.
        assert_eq!(need("GET", "/api/v1/something-new"), Need::Administrator);
    }

    #[test]
    fn roles_cover_their_needs() {
        let route = "/api/v1/templates";
        assert!(caller(Role::User).allow(Need::User, "GET", route).is_ok());
        let e = caller(Role::JobAdministrator).allow(Need::Administrator, "POST", route).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Forbidden);
        assert!(e.message.contains("Administrator role") && e.message.contains("JobAdministrator"), "{}", e.message);
        assert!(caller(Role::Administrator).allow(Need::Administrator, "POST", route).is_ok());
    }

    #[test]
    fn users_manage_their_own_jobs_and_job_administrators_every_job() {
        assert!(caller(Role::User).may_manage_job("alice"));
        assert!(!caller(Role::User).may_manage_job("bob"));
        assert!(caller(Role::JobAdministrator).may_manage_job("bob"));
        assert!(caller(Role::Administrator).may_manage_job("bob"));
        let e = caller(Role::User).check_job(7, "bob").unwrap_err();
        assert!(e.message.contains("job 7 belongs to bob"), "{}", e.message);
    }

    #[test]
    fn join_tokens_expire_and_keep_to_their_template() {
        let token = JoinTokenRecord {
            id: "t1".into(),
            template: Some("burst".into()),
            expires_at: 100,
            token_salt: String::new(),
            token_hash: String::new(),
            created_at: 0,
        };
        let burst = |deploying| NameAtJoin { template: Some("burst".into()), deploying, certified: false };
        assert!(token.admits("burst-0001", &burst(true), 99).is_ok());
        let e = token.admits("burst-0001", &burst(true), 100).unwrap_err();
        assert!(e.kind == crate::ErrorKind::Unauthorized && e.message.contains("expired"), "{}", e.message);
        let e = token.admits("laptop", &NameAtJoin::default(), 5).unwrap_err();
        assert!(e.message.contains("template burst") && e.message.contains("laptop"), "{}", e.message);
        let cluster = JoinTokenRecord { template: None, ..token.clone() };
        assert!(cluster.admits("laptop", &NameAtJoin::default(), 5).is_ok());
    }

    #[test]
    fn a_join_never_takes_a_name_that_is_already_someones() {
        let token = JoinTokenRecord {
            id: "t1".into(),
            template: None,
            expires_at: 100,
            token_salt: String::new(),
            token_hash: String::new(),
            created_at: 0,
        };
        let burst = |deploying| NameAtJoin { template: Some("burst".into()), deploying, certified: false };
        // A cluster token cannot take a burst node, deploying or not.
        for deploying in [true, false] {
            let e = token.admits("burst-0001", &burst(deploying), 5).unwrap_err();
            assert!(e.kind == crate::ErrorKind::Forbidden && e.message.contains("burst node"), "{}", e.message);
        }
        // Its template's token only while it is being deployed, and once a deployment.
        let scoped = JoinTokenRecord { template: Some("burst".into()), ..token.clone() };
        assert!(scoped.admits("burst-0001", &burst(true), 5).is_ok());
        assert!(scoped.admits("burst-0001", &burst(false), 5).unwrap_err().message.contains("not being deployed"));
        let joined = NameAtJoin { certified: true, ..burst(true) };
        assert!(scoped.admits("burst-0001", &joined, 5).unwrap_err().message.contains("joined already"));
        // A live on-premises node is re-joined only after a revocation.
        let live = NameAtJoin { certified: true, ..NameAtJoin::default() };
        assert!(token.admits("laptop", &live, 5).unwrap_err().message.contains("node revoke laptop"));
        assert!(token.admits("laptop", &NameAtJoin { certified: false, ..live }, 5).is_ok());
        assert!(token.admits("gone", &NameAtJoin { certified: true, ..NameAtJoin::default() }, 5).is_err());
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user_name("alice.smith-2").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
