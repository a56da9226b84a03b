//! A **join grant**: what an agent needs to join a cluster whose head node speaks TLS, the
//! cluster's certificate and a join token. A provider that starts an agent process on this
//! machine hands it over on the agent's standard input (`thunderhead agent --join-from-stdin`),
//! as one JSON document: never on its command line, which every user of the machine can read, nor
//! in its environment, which the agent's children would inherit.

use crate::AgentError;
use serde::{Deserialize, Serialize};
use std::io::Read;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGrant {
    pub ca_pem: String,
    pub token: String,
}

impl std::fmt::Debug for JoinGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinGrant").field("ca_pem", &"(the cluster's certificate)").field("token", &"(secret)").finish()
    }
}

/// The most a grant document may take: a certificate and a token take a few KiB.
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;

impl JoinGrant {
    /// The document an agent reads with [`JoinGrant::read_from`].
    pub fn to_document(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a grant serialises")
    }

    /// Reads a grant document to its end (the writer closes it).
    pub fn read_from(mut input: impl Read) -> Result<JoinGrant, AgentError> {
        let mut text = Vec::new();
        (&mut input)
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| AgentError::Setup(format!("cannot read the join grant on standard input: {e}")))?;
        if text.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(AgentError::Setup(format!(
                "the join grant on standard input is over {MAX_DOCUMENT_BYTES} bytes (--join-from-stdin expects {{\"ca_pem\": …, \"token\": …}})"
            )));
        }
        // The error names the place, never the text: it holds a secret.
        serde_json::from_slice(&text).map_err(|e| {
            AgentError::Setup(format!(
                "the join grant on standard input is not {{\"ca_pem\": …, \"token\": …}} (--join-from-stdin): {}",
                what_is_wrong(&e)
            ))
        })
    }
}

/// What is wrong with a document, in words that quote none of it (serde's messages may).
fn what_is_wrong(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "it could not be read",
        serde_json::error::Category::Syntax => "it is not JSON",
        serde_json::error::Category::Data => "a field is missing or of the wrong type",
        serde_json::error::Category::Eof => "it ends early",
    }
}

/// Overwrites a secret's bytes before it is freed, so the agent keeps no copy of a join token
/// it has used.
pub(crate) fn wipe(secret: String) {
    let mut bytes = secret.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_goes_through_its_document_unchanged() {
        let grant = JoinGrant { ca_pem: "-----BEGIN CERTIFICATE-----\n…".into(), token: "thj1_a_b".into() };
        assert_eq!(JoinGrant::read_from(&grant.to_document()[..]).unwrap(), grant);
    }

    #[test]
    fn a_bad_document_is_refused_without_showing_it() {
        for bad in [&b"thj1_a_secret"[..], br#"{"token": "thj1_a_secret"}"#, br#"{"ca_pem": "x", "token": "thj1_a_sec"#]
        {
            let err = JoinGrant::read_from(bad).unwrap_err().to_string();
            assert!(err.contains("--join-from-stdin") && !err.contains("secret"), "{err}");
        }
        let huge = vec![b' '; (MAX_DOCUMENT_BYTES + 10) as usize];
        assert!(JoinGrant::read_from(&huge[..]).unwrap_err().to_string().contains("over"));
    }

    #[test]
    fn the_debug_form_shows_no_secret() {
        let grant = JoinGrant { ca_pem: "PEM".into(), token: "thj1_a_b".into() };
        assert!(!format!("{grant:?}").contains("thj1_"));
    }
}
