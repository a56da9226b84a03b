//! How agents join: a join token (per cluster or per template, with an expiry) is traded once
//! for a node certificate signed by the cluster's authority; from then on the agent proves
//! itself with that certificate (mutual TLS), and the head node checks that the certificate is
//! one it issued to that node and has not revoked.

use crate::tls::{ClusterCa, Issued};
use crate::users::{Minted, mint, parse, proves};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use thunderhead_core::access::{JoinTokenRecord, JoinTokenView, NameAtJoin, NodeCertRecord};
use thunderhead_core::persist::Op;
use thunderhead_core::{Error, Millis};
use thunderhead_proto::{JoinReply, JoinRequest};

/// How long the token a burst node gets at deployment is honoured: enough to deploy and join.
const DEPLOY_TOKEN_MS: Millis = 2 * 3_600_000;

/// The join tokens and node certificates of a head node that serves TLS.
///
/// The actor is the only writer: each change is made in memory and its [`Op`]s are pushed to
/// the actor's batch, which is committed before anyone hears of the change. Readers (the API's
/// check of agent requests, the agent gateway) read the maps directly, without asking the
/// actor. A token or certificate made here is seen by no one before its batch is durable: only
/// the answer, sent after the commit, carries it.
pub struct Enrolment {
    pub ca: ClusterCa,
    tokens: RwLock<HashMap<String, JoinTokenRecord>>,
    certs: RwLock<HashMap<String, NodeCertRecord>>,
    /// The token handed to each template's deployments (its id, the token, when it expires),
    /// while it has an hour left.
    deploy_tokens: Mutex<HashMap<String, (String, String, Millis)>>,
}

/// Why a head node over plain HTTP has no join tokens or node certificates.
pub fn plain_http() -> Error {
    Error::conflict(
        "this head node serves plain HTTP (--insecure-http): agents connect without joining, so there are no join tokens or node certificates",
    )
}

impl Enrolment {
    pub fn new(ca: ClusterCa, tokens: Vec<JoinTokenRecord>, certs: Vec<NodeCertRecord>) -> Enrolment {
        Enrolment {
            ca,
            tokens: RwLock::new(tokens.into_iter().map(|t| (t.id.clone(), t)).collect()),
            certs: RwLock::new(certs.into_iter().map(|c| (c.fingerprint.clone(), c)).collect()),
            deploy_tokens: Mutex::default(),
        }
    }

    /// A new join token, with its ops in `ops`; expired tokens are dropped meanwhile.
    pub fn create_token(
        &self,
        ops: &mut Vec<Op>,
        template: Option<String>,
        ttl: Millis,
        now: Millis,
    ) -> (JoinTokenView, String) {
        let Minted { id, salt, hash, token } = mint("thj1");
        let record = JoinTokenRecord {
            id: id.clone(),
            template,
            expires_at: now.saturating_add(ttl),
            token_salt: salt,
            token_hash: hash,
            created_at: now,
        };
        let mut tokens = self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired: Vec<String> = tokens.values().filter(|t| t.expires_at <= now).map(|t| t.id.clone()).collect();
        for id in expired {
            tokens.remove(&id);
            ops.push(Op::DeleteJoinToken(id));
        }
        ops.push(Op::PutJoinToken(record.clone()));
        let view = JoinTokenView::from(&record);
        tokens.insert(id, record);
        (view, token)
    }

    pub fn list_tokens(&self) -> Vec<JoinTokenView> {
        let mut all: Vec<JoinTokenView> = self
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(JoinTokenView::from)
            .collect();
        all.sort_by_key(|t| t.created_at);
        all
    }

    pub fn delete_token(&self, ops: &mut Vec<Op>, id: &str) -> Result<(), Error> {
        let mut tokens = self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.remove(id).is_none() {
            return Err(Error::not_found(format!("join token {id} does not exist (see thunderhead token list)")));
        }
        ops.push(Op::DeleteJoinToken(id.to_string()));
        self.deploy_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (cached, _, _)| cached != id);
        Ok(())
    }

    /// The token a deployment of `template` hands its agent: the one at hand while it lasts,
    /// else a new one (with its ops in `ops`).
    pub fn deploy_token(&self, ops: &mut Vec<Op>, template: &str, now: Millis) -> String {
        let mut cached = self.deploy_tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, token, expires)) = cached.get(template)
            && *expires > now + DEPLOY_TOKEN_MS / 2
        {
            return token.clone();
        }
        let (view, token) = self.create_token(ops, Some(template.to_string()), DEPLOY_TOKEN_MS, now);
        cached.insert(template.to_string(), (view.id, token.clone(), view.expires_at));
        token
    }

    /// The token a join request names, if its name is one a node may have and the token is one
    /// this head node honours. Checked before a certificate is made for the request, and again
    /// when it is recorded.
    pub fn check_join(&self, request: &JoinRequest) -> Result<JoinTokenRecord, Error> {
        thunderhead_core::template::validate_name("node", &request.name)?;
        self.find_token(&request.token).ok_or_else(|| {
            Error::unauthorized(
                "the join token is not valid here (mistyped, removed, or of another head node; ask an Administrator: thunderhead token create)",
            )
        })
    }

    fn find_token(&self, token: &str) -> Option<JoinTokenRecord> {
        let (id, secret) = parse("thj1", token)?;
        let tokens = self.tokens.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = tokens.get(id)?;
        proves(&record.token_salt, &record.token_hash, secret).then(|| record.clone())
    }

    /// Trades a join token for `issued`, a node certificate made for the request; `name` is what
    /// the head node knows of the node of that name (its certificates are filled in here). The
    /// certificate's op, and the revocation of the node's earlier ones, go to `ops`: the reply
    /// leaves once they are durable.
    pub fn join(
        &self,
        ops: &mut Vec<Op>,
        request: &JoinRequest,
        issued: Issued,
        mut name: NameAtJoin,
        now: Millis,
    ) -> Result<JoinReply, Error> {
        let token = self.check_join(request)?;
        // Only the actor writes certificates, one request at a time: of two joins of one name
        // at once, one wins.
        let mut certs = self.certs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        name.certified = certs.values().any(|c| c.node == request.name && !c.revoked);
        token.admits(&request.name, &name, now)?;
        let record = NodeCertRecord {
            fingerprint: issued.fingerprint.clone(),
            node: request.name.clone(),
            issued_at: now,
            revoked: false,
        };
        replace_certs(&mut certs, ops, &request.name, Some(record));
        drop(certs);
        tracing::info!(node = %request.name, token = %token.id, "a node joined and got its certificate");
        Ok(JoinReply { certificate: issued.cert_pem, key: issued.key_pem, ca: self.ca.cert_pem.clone() })
    }

    /// The node the agent at `peer` proved itself to be with its certificate.
    pub fn node_of_peer(&self, peer: &crate::tls::Peer) -> Result<String, String> {
        let fingerprint = peer.certificate.as_deref().ok_or_else(|| {
            "it showed no node certificate (an agent joins first with a join token: thunderhead agent --join-token)"
                .to_string()
        })?;
        self.node_of(fingerprint)
    }

    /// The node a certificate belongs to, unless it was revoked or never issued here.
    pub fn node_of(&self, fingerprint: &str) -> Result<String, String> {
        match self.certs.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(fingerprint) {
            Some(c) if !c.revoked => Ok(c.node.clone()),
            Some(c) => Err(format!("the certificate of node {} was revoked", c.node)),
            None => Err("the certificate was not issued by this head node".into()),
        }
    }

    /// Revokes every certificate of `node`, with the ops in `ops`; returns how many.
    pub fn revoke_node(&self, ops: &mut Vec<Op>, node: &str) -> usize {
        let mut certs = self.certs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        replace_certs(&mut certs, ops, node, None)
    }
}

/// Revokes `node`'s certificates and records `new` as its only one, with the ops in `ops`;
/// returns how many were revoked.
fn replace_certs(
    certs: &mut HashMap<String, NodeCertRecord>,
    ops: &mut Vec<Op>,
    node: &str,
    new: Option<NodeCertRecord>,
) -> usize {
    let mut changed: Vec<NodeCertRecord> = certs
        .values()
        .filter(|c| c.node == node && !c.revoked)
        .map(|c| NodeCertRecord { revoked: true, ..c.clone() })
        .collect();
    let revoked = changed.len();
    changed.extend(new);
    for c in changed {
        ops.push(Op::PutNodeCert(c.clone()));
        certs.insert(c.fingerprint.clone(), c);
    }
    revoked
}
