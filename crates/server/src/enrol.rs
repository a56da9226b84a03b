//! How agents join: a join token (per cluster or per template, with an expiry) is traded once
//! for a node certificate signed by the cluster's authority; from then on the agent proves
//! itself with that certificate (mutual TLS), and the head node checks that the certificate is
//! one it issued to that node and has not revoked.

use crate::tls::ClusterCa;
use crate::users::{digest, random_hex, same};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use thunderhead_core::access::{JoinTokenRecord, JoinTokenView, NodeCertRecord};
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
    /// The token handed to each template's deployments, while it has an hour left.
    deploy_tokens: Mutex<HashMap<String, (String, Millis)>>,
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
        let id = random_hex(6);
        let secret = random_hex(24);
        let token_salt = random_hex(16);
        let record = JoinTokenRecord {
            id: id.clone(),
            template,
            expires_at: now.saturating_add(ttl),
            token_hash: digest(&token_salt, &secret),
            token_salt,
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
        tokens.insert(id.clone(), record);
        Ok((view, format!("thj1_{id}_{secret}")))
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
        self.deploy_tokens.lock().expect("deploy tokens lock").retain(|_, (t, _)| !t.contains(&format!("_{id}_")));
        Ok(())
    }

    /// The token a deployment of `template` hands its agent.
    pub fn deploy_token(&self, template: &str, now: Millis) -> Result<String, Error> {
        let mut cached = self.deploy_tokens.lock().expect("deploy tokens lock");
        if let Some((token, expires)) = cached.get(template)
            && *expires > now + DEPLOY_TOKEN_MS / 2
        {
            return Ok(token.clone());
        }
        let (view, token) = self.create_token(Some(template.to_string()), DEPLOY_TOKEN_MS, now)?;
        cached.insert(template.to_string(), (token.clone(), view.expires_at));
        Ok(token)
    }

    fn find_token(&self, token: &str) -> Option<JoinTokenRecord> {
        let (id, secret) = token.strip_prefix("thj1_")?.split_once('_')?;
        let tokens = self.tokens.read().expect("tokens lock");
        let record = tokens.get(id)?;
        same(digest(&record.token_salt, secret).as_bytes(), record.token_hash.as_bytes()).then(|| record.clone())
    }

    /// Trades a join token for a node certificate; `node_template` is the template of the node
    /// of that name, if the head node knows one. The certificate is durable, and the node's
    /// earlier certificates revoked, before the reply leaves.
    pub fn join(&self, request: &JoinRequest, node_template: Option<&str>, now: Millis) -> Result<JoinReply, Error> {
        thunderhead_core::template::validate_name("node", &request.name)?;
        let token = self.find_token(&request.token).ok_or_else(|| {
            Error::unauthorized(
                "the join token is not valid here (mistyped, removed, or of another head node; ask an Administrator: thunderhead token create)",
            )
        })?;
        token.admits(&request.name, node_template, now)?;
        let issued = self.ca.issue_node(&request.name).map_err(Error::conflict)?;
        let mut certs = self.certs.write().expect("certs lock");
        let mut ops: Vec<Op> = certs
            .values()
            .filter(|c| c.node == request.name && !c.revoked)
            .map(|c| Op::PutNodeCert(NodeCertRecord { revoked: true, ..c.clone() }))
            .collect();
        let record = NodeCertRecord {
            fingerprint: issued.fingerprint.clone(),
            node: request.name.clone(),
            issued_at: now,
            revoked: false,
        };
        ops.push(Op::PutNodeCert(record.clone()));
        self.store.apply(&ops).map_err(store_error)?;
        for op in ops {
            if let Op::PutNodeCert(c) = op {
                certs.insert(c.fingerprint.clone(), c);
            }
        }
        tracing::info!(node = %request.name, token = %token.id, "a node joined and got its certificate");
        Ok(JoinReply { certificate: issued.cert_pem, key: issued.key_pem, ca: self.ca.cert_pem.clone() })
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
        let mut certs = self.certs.write().expect("certs lock");
        let ops: Vec<Op> = certs
            .values()
            .filter(|c| c.node == node && !c.revoked)
            .map(|c| Op::PutNodeCert(NodeCertRecord { revoked: true, ..c.clone() }))
            .collect();
        self.store.apply(&ops).map_err(store_error)?;
        let n = ops.len();
        for op in ops {
            if let Op::PutNodeCert(c) = op {
                certs.insert(c.fingerprint.clone(), c);
            }
        }
        Ok(n)
    }
}
