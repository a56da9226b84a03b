//! API tokens: issued once, kept only as salted SHA-256 hashes, checked on every request.
//!
//! A token reads `th1_ID_SECRET`: `ID` finds the user, `SECRET` (192 random bits) is what the
//! hash proves. Random secrets of that size need no slow password hash; the salt keeps equal
//! secrets from showing as equal hashes.

use crate::secrets::{hex, unhex};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use thunderhead_core::access::{Caller, Role, UserRecord};

/// The users of a head node, by token id, for checking tokens without touching the database.
/// The actor is its only writer once the head node runs (see `actor::access`); the API reads
/// it on every request.
#[derive(Default)]
pub struct Users {
    by_token: RwLock<HashMap<String, UserRecord>>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the system has randomness");
    hex(&buf)
}

fn digest(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(unhex(salt).unwrap_or_default());
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

/// A token as the head node mints it (`PREFIX_ID_SECRET`, shown once) and keeps it (the id,
/// a salt and the hash). API tokens and join tokens are both made this way.
pub(crate) struct Minted {
    pub id: String,
    pub salt: String,
    pub hash: String,
    pub token: String,
}

pub(crate) fn mint(prefix: &str) -> Minted {
    let (id, secret, salt) = (random_hex(6), random_hex(24), random_hex(16));
    let hash = digest(&salt, &secret);
    Minted { token: format!("{prefix}_{id}_{secret}"), id, salt, hash }
}

/// The id and secret of a token of `prefix`.
pub(crate) fn parse<'a>(prefix: &str, token: &'a str) -> Option<(&'a str, &'a str)> {
    token.strip_prefix(prefix)?.strip_prefix('_')?.split_once('_')
}

/// Whether `secret` is the one `salt` and `hash` were made from. Compares without an early
/// exit, so the time taken does not tell how much matched.
pub(crate) fn proves(salt: &str, hash: &str, secret: &str) -> bool {
    let (a, b) = (digest(salt, secret), hash);
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new token for `name`: the record to store and the token to show once.
pub fn issue(name: &str, role: Role, now: u64) -> (UserRecord, String) {
    let Minted { id, salt, hash, token } = mint("th1");
    let record =
        UserRecord { name: name.to_string(), role, token_id: id, token_salt: salt, token_hash: hash, created_at: now };
    (record, token)
}

/// A record with the token it was just issued: the only answer that ever shows the token.
#[derive(Debug, serde::Serialize)]
pub struct Shown<V> {
    #[serde(flatten)]
    pub view: V,
    pub token: String,
}

/// The refusal for a user that does not exist.
pub fn no_user(name: &str) -> thunderhead_core::Error {
    let name = thunderhead_core::text::escape(name);
    thunderhead_core::Error::not_found(format!("user {name} does not exist (see thunderhead user list)"))
}

impl Users {
    pub fn new(records: Vec<UserRecord>) -> Users {
        let users = Users::default();
        for r in records {
            users.put(r);
        }
        users
    }

    /// The user a token belongs to, if it is one this head node issued and still honours.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        let (id, secret) = parse("th1", token)?;
        let users = self.by_token.read().expect("users lock");
        let user = users.get(id)?;
        proves(&user.token_salt, &user.token_hash, secret).then(|| Caller { name: user.name.clone(), role: user.role })
    }

    pub fn put(&self, record: UserRecord) {
        let mut users = self.by_token.write().expect("users lock");
        users.retain(|_, u| !u.name.eq_ignore_ascii_case(&record.name));
        users.insert(record.token_id.clone(), record);
    }

    pub fn remove(&self, name: &str) {
        self.by_token.write().expect("users lock").retain(|_, u| !u.name.eq_ignore_ascii_case(name));
    }

    /// The user of `name`. Names compare without regard to case, as logins do: `ADMIN` is `admin`,
    /// so no one can be added under another's name in other letters.
    pub fn get(&self, name: &str) -> Option<UserRecord> {
        self.by_token.read().expect("users lock").values().find(|u| u.name.eq_ignore_ascii_case(name)).cloned()
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<UserRecord> {
        let mut all: Vec<UserRecord> = self.by_token.read().expect("users lock").values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_verifies_and_is_stored_only_as_a_hash() {
        let (record, token) = issue("alice", Role::User, 1);
        let secret = token.rsplit('_').next().unwrap();
        let stored = serde_json::to_string(&record).unwrap();
        assert!(!stored.contains(secret), "the secret part is not stored");
        let users = Users::new(vec![record]);
        assert_eq!(users.verify(&token), Some(Caller { name: "alice".into(), role: Role::User }));
    }

    #[test]
    fn altered_foreign_and_replaced_tokens_are_refused() {
        let (record, token) = issue("alice", Role::Administrator, 1);
        let users = Users::new(vec![record]);
        let mut altered = token.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(users.verify(&altered), None);
        assert_eq!(users.verify(&issue("alice", Role::Administrator, 1).1), None, "another head node's token");
        for junk in ["", "th1_", "th1__", "Bearer x", "th1_zz_zz"] {
            assert_eq!(users.verify(junk), None, "{junk}");
        }
        let (rotated, new_token) = issue("alice", Role::Administrator, 2);
        users.put(rotated);
        assert_eq!(users.verify(&token), None, "a replaced token no longer works");
        assert!(users.verify(&new_token).is_some());
        users.remove("alice");
        assert_eq!(users.verify(&new_token), None);
    }
}
