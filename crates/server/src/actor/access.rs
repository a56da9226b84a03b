//! The requests about who may use the cluster: users and their API tokens, job ids reserved
//! for a submission to come, join tokens and node certificates.
//!
//! The actor owns this state as it owns the [`Cluster`](thunderhead_core::cluster::Cluster):
//! each change is made here, one request at a time, and its ops go to the batch's group commit,
//! so nothing is acknowledged before it is durable. The maps that the API and the agent gateway
//! read on every request ([`Users`](crate::users::Users), the certificates in
//! [`Enrolment`]) are written only from here and read without asking the actor.

use super::Actor;
use crate::enrol::{self, Enrolment};
use crate::tls::Issued;
use crate::users::{self, Shown};
use std::sync::Arc;
use thunderhead_core::access::{JoinTokenView, NameAtJoin, Role, UserRecord, UserView};
use thunderhead_core::cluster::Effects;
use thunderhead_core::job::JobSubmission;
use thunderhead_core::persist::Op;
use thunderhead_core::view::SubmitReply;
use thunderhead_core::{Error, ErrorKind, JobId, Millis};
use thunderhead_proto::{JoinReply, JoinRequest};
use thunderhead_providers::JoinGrant;

impl Actor {
    /// Hands out a job id ahead of its submission, so a client can stage the job's files in
    /// its area first, and notes who it is for.
    pub(super) fn reserve_job(&mut self, fx: &mut Effects, owner: String) -> SubmitReply {
        let id = self.cluster.reserve_job_id(fx);
        self.reserved.insert(id, owner);
        SubmitReply { id }
    }

    /// Submits a job; the reservation of its id, if it had one, is used up.
    pub(super) fn submit_job(
        &mut self,
        fx: &mut Effects,
        job: JobSubmission,
        now: Millis,
    ) -> Result<SubmitReply, Error> {
        let reserved = job.reserved_id;
        let id = self.cluster.submit(fx, job, now)?;
        if let Some(reserved) = reserved {
            self.reserved.remove(&reserved);
        }
        Ok(SubmitReply { id })
    }

    /// The owner of job `id`, or whoever reserved its id; `None` if neither.
    pub(super) fn job_owner(&self, id: JobId) -> Option<String> {
        self.reserved.get(&id).cloned().or_else(|| self.cluster.job(id).ok().map(|job| job.owner))
    }

    pub(super) fn add_user(
        &mut self,
        fx: &mut Effects,
        name: &str,
        role: Role,
        now: Millis,
    ) -> Result<Shown<UserView>, Error> {
        if let Some(existing) = self.users.get(name) {
            let existing = existing.name;
            return Err(Error::conflict(format!(
                "user {existing} exists (names do not differ by case; give them a new token with: thunderhead user token {existing})"
            )));
        }
        let (record, token) = users::issue(name, role, now);
        tracing::info!(user = %name, role = role.name(), "user added");
        Ok(self.put_user(fx, record, token))
    }

    /// Gives a user a new token; the old one is refused from then on.
    pub(super) fn rotate_token(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<Shown<UserView>, Error> {
        let old = self.users.get(name).ok_or_else(|| users::no_user(name))?;
        let (mut record, token) = users::issue(&old.name, old.role, now);
        record.created_at = old.created_at;
        tracing::info!(user = %old.name, "token replaced");
        Ok(self.put_user(fx, record, token))
    }

    /// Records a user with their new token, which only the answer (sent once the record is
    /// durable) shows.
    fn put_user(&mut self, fx: &mut Effects, record: UserRecord, token: String) -> Shown<UserView> {
        fx.ops.push(Op::PutUser(record.clone()));
        let view = UserView::from(&record);
        self.users.put(record);
        Shown { view, token }
    }

    /// Removes user `name`; `by`, who asks, may not remove themself.
    pub(super) fn remove_user(&mut self, fx: &mut Effects, name: &str, by: &str) -> Result<UserView, Error> {
        let user = self.users.get(name).ok_or_else(|| users::no_user(name))?;
        let name = user.name.clone();
        if name == by {
            return Err(Error::conflict(format!("you cannot remove yourself ({name}); another Administrator can")));
        }
        fx.ops.push(Op::DeleteUser(name.clone()));
        self.users.remove(&name);
        tracing::info!(user = %name, "user removed");
        Ok(UserView::from(&user))
    }

    fn enrolment(&self) -> Result<Arc<Enrolment>, Error> {
        self.enrolment.clone().ok_or_else(enrol::plain_http)
    }

    /// A join token (for nodes of `template` only, if given) honoured for `ttl`.
    pub(super) fn create_join_token(
        &mut self,
        fx: &mut Effects,
        template: Option<String>,
        ttl: Millis,
        now: Millis,
    ) -> Result<Shown<JoinTokenView>, Error> {
        let enrolment = self.enrolment()?;
        if let Some(t) = &template {
            self.cluster.template(t)?;
        }
        let (view, token) = enrolment.create_token(&mut fx.ops, template, ttl, now);
        tracing::info!(id = %view.id, template = ?view.template, "join token created");
        Ok(Shown { view, token })
    }

    pub(super) fn delete_join_token(&mut self, fx: &mut Effects, id: &str) -> Result<(), Error> {
        self.enrolment()?.delete_token(&mut fx.ops, id)?;
        tracing::info!(%id, "join token removed");
        Ok(())
    }

    /// Revokes a node's certificates and closes its agent's connections; answers how many of
    /// each.
    pub(super) fn revoke_node(&mut self, fx: &mut Effects, node: &str) -> Result<(usize, usize), Error> {
        let revoked = self.enrolment()?.revoke_node(&mut fx.ops, node);
        let closed = self.cluster.disconnect_node(fx, node, "its node certificate was revoked");
        tracing::info!(%node, revoked, "node certificates revoked");
        Ok((revoked, closed))
    }

    /// Records `issued`, a certificate made for a join request, if the request is still one
    /// the head node admits: its token honoured, its name free or that of a node deploying.
    pub(super) fn join(
        &mut self,
        fx: &mut Effects,
        request: &JoinRequest,
        issued: Issued,
        now: Millis,
    ) -> Result<JoinReply, Error> {
        let enrolment = self.enrolment()?;
        let known = match self.cluster.node(&request.name) {
            Ok(node) => {
                NameAtJoin { template: node.template, deploying: node.state == "Provisioning", certified: false }
            }
            Err(e) if e.kind == ErrorKind::NotFound => NameAtJoin::default(),
            Err(e) => return Err(e),
        };
        enrolment.join(&mut fx.ops, request, issued, known, now)
    }

    /// What a deployment of `node` of `template` hands its agent to join with: a token of the
    /// template and the cluster's certificate; `None` over plain HTTP. The node's earlier
    /// certificates are revoked first, so only this deployment's agent joins as the node. The
    /// ops go to `ops`, committed before the provider is called.
    pub(super) fn join_grant(&self, ops: &mut Vec<Op>, node: &str, template: &str, now: Millis) -> Option<JoinGrant> {
        let enrolment = self.enrolment.as_ref()?;
        enrolment.revoke_node(ops, node);
        let token = enrolment.deploy_token(ops, template, now);
        Some(JoinGrant { ca_pem: enrolment.ca.cert_pem.clone(), token })
    }
}
