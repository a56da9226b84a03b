//! How agents join: a join token (per cluster or per template, with an expiry) is traded once
//! for a node certificate signed by the cluster's authority; from then on the agent proves
//! itself with that certificate (mutual TLS), and the head node checks that the certificate is
//! one it issued to that node and has not revoked.

use crate::tls::ClusterCa;
use crate::users::{Minted, mint, parse, proves};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use thunderhead_core::access::{JoinTokenRecord, JoinTokenView, NameAtJoin, NodeCertRecord};
use thunderhead_core::persist::Op;
use thunderhead_core::{Error, Millis};
use thunderhead_proto::{JoinReply, JoinRequest};
use thunderhead_store::Store;

/// How long the token a burst node gets at deployment is honoured: enough to deploy and join.
const DEPLOY_TOKEN_MS: Millis = 2 * 3_600_000;

pub struct Enrolment {
    pub ca: ClusterCa,
    store: Arc<dyn Store>,
    tokens: RwLock<HashMap<String, JoinTokenRecord>>,
    certs: RwLock<HashMap<String, NodeCertRecord>>,
    /// The token handed to each template's deployments (its id, the token, when it expires),
    /// while it has an hour left.
    deploy_tokens: Mutex<HashMap<String, (String, String, Millis)>>,
}

fn store_error(e: thunderhead_store::StoreError) -> Error {
    Error::conflict(format!("the head node could not record it: {e} (try again)"))
}

impl Enrolment {
    pub fn new(
        ca: ClusterCa,
        store: Arc<dyn Store>,
        tokens: Vec<JoinTokenRecord>,
        certs: Vec<NodeCertRecord>,
    ) -> Enrolment {
        Enrolment {
            ca,
            store,
            tokens: RwLock::new(tokens.into_iter().map(|t| (t.id.clone(), t)).collect()),
            certs: RwLock::new(certs.into_iter().map(|c| (c.fingerprint.clone(), c)).collect()),
            deploy_tokens: Mutex::default(),
        }
    }

    /// A new join token, durable before it is returned; expired tokens are dropped meanwhile.
    pub fn create_token(
        &self,
        template: Option<String>,
        ttl: Millis,
        now: Millis,
    ) -> Result<(JoinTokenView, String), Error> {
        let Minted { id, salt, hash, token } = mint("thj1");
        let record = JoinTokenRecord {
            id: id.clone(),
            template,
            expires_at: now.saturating_add(ttl),
            token_salt: salt,
            token_hash: hash,
            created_at: now,
        };
        let mut tokens = self.tokens.write().expect("tokens lock");
        let expired: Vec<String> = tokens.values().filter(|t| t.expires_at <= now).map(|t| t.id.clone()).collect();
        let mut ops: Vec<Op> = expired.iter().map(|id| Op::DeleteJoinToken(id.clone())).collect();
        ops.push(Op::PutJoinToken(record.clone()));
        self.store.apply(&ops).map_err(store_error)?;
        for id in expired {
            tokens.remove(&id);
        }
        let view = JoinTokenView::from(&record);
        tokens.insert(id, record);
        Ok((view, token))
    }

    pub fn list_tokens(&self) -> Vec<JoinTokenView> {
        let mut all: Vec<JoinTokenView> =
            self.tokens.read().expect("tokens lock").values().map(JoinTokenView::from).collect();
        all.sort_by_key(|t| t.created_at);
        all
    }

    pub fn delete_token(&self, id: &str) -> Result<(), Error> {
        let mut tokens = self.tokens.write().expect("tokens lock");
        if !tokens.contains_key(id) {
            return Err(Error::not_found(format!("join token {id} does not exist (see thunderhead token list)")));
        }
        self.store.apply(&[Op::DeleteJoinToken(id.to_string())]).map_err(store_error)?;
        tokens.remove(id);
        self.deploy_tokens.lock().expect("deploy tokens lock").retain(|_, (cached, _, _)| cached != id);
        Ok(())
    }

    /// The token a deployment of `template` hands its agent.
    pub fn deploy_token(&self, template: &str, now: Millis) -> Result<String, Error> {
        let mut cached = self.deploy_tokens.lock().expect("deploy tokens lock");
        if let Some((_, token, expires)) = cached.get(template)
            && *expires > now + DEPLOY_TOKEN_MS / 2
        {
            return Ok(token.clone());
        }
        let (view, token) = self.create_token(Some(template.to_string()), DEPLOY_TOKEN_MS, now)?;
        cached.insert(template.to_string(), (view.id, token.clone(), view.expires_at));
        Ok(token)
    }

    fn find_token(&self, token: &str) -> Option<JoinTokenRecord> {
        let (id, secret) = parse("thj1", token)?;
        let tokens = self.tokens.read().expect("tokens lock");
        let record = tokens.get(id)?;
        proves(&record.token_salt, &record.token_hash, secret).then(|| record.clone())
    }

    /// Trades a join token for a node certificate; `name` is what the head node knows of the node
    /// of that name (its certificates are filled in here). The certificate is durable, and the
    /// node's earlier certificates revoked, before the reply leaves.
    pub fn join(&self, request: &JoinRequest, mut name: NameAtJoin, now: Millis) -> Result<JoinReply, Error> {
        thunderhead_core::template::validate_name("node", &request.name)?;
        let token = self.find_token(&request.token).ok_or_else(|| {
            Error::unauthorized(
                "the join token is not valid here (mistyped, removed, or of another head node; ask an Administrator: thunderhead token create)",
            )
        })?;
        // Checked and issued under one lock: of two joins of one name at once, one wins.
        let mut certs = self.certs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        name.certified = certs.values().any(|c| c.node == request.name && !c.revoked);
        token.admits(&request.name, &name, now)?;
        let issued = self.ca.issue_node(&request.name).map_err(Error::conflict)?;
        let record = NodeCertRecord {
            fingerprint: issued.fingerprint.clone(),
            node: request.name.clone(),
            issued_at: now,
            revoked: false,
        };
        self.replace_certs_locked(&mut certs, &request.name, Some(record))?;
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
        match self.certs.read().expect("certs lock").get(fingerprint) {
            Some(c) if !c.revoked => Ok(c.node.clone()),
            Some(c) => Err(format!("the certificate of node {} was revoked", c.node)),
            None => Err("the certificate was not issued by this head node".into()),
        }
    }

    /// Revokes every certificate of `node`; returns how many.
    pub fn revoke_node(&self, node: &str) -> Result<usize, Error> {
        self.replace_certs(node, None)
    }

    /// Revokes `node`'s certificates and records `new` as its only one, durably before the
    /// change is seen; returns how many were revoked.
    fn replace_certs(&self, node: &str, new: Option<NodeCertRecord>) -> Result<usize, Error> {
        let mut certs = self.certs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.replace_certs_locked(&mut certs, node, new)
    }

    fn replace_certs_locked(
        &self,
        certs: &mut HashMap<String, NodeCertRecord>,
        node: &str,
        new: Option<NodeCertRecord>,
    ) -> Result<usize, Error> {
        let mut changed: Vec<NodeCertRecord> = certs
            .values()
            .filter(|c| c.node == node && !c.revoked)
            .map(|c| NodeCertRecord { revoked: true, ..c.clone() })
            .collect();
        let revoked = changed.len();
        changed.extend(new);
        if changed.is_empty() {
            return Ok(0);
        }
        let ops: Vec<Op> = changed.iter().cloned().map(Op::PutNodeCert).collect();
        self.store.apply(&ops).map_err(store_error)?;
        for c in changed {
            certs.insert(c.fingerprint.clone(), c);
        }
        Ok(revoked)
    }
}
