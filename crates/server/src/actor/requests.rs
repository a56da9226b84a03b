//! The requests the API makes of the actor, each carrying a [`Reply`] of its own type, and how
//! the actor answers them. An answer leaves once the batch of its request is durable.

use super::Actor;
use crate::commit::FollowUp;
use crate::tls::Issued;
use crate::users::Shown;
use thunderhead_core::access::{FileUse, JoinTokenView, Role, UserView};
use thunderhead_core::cluster::Effects;
use thunderhead_core::job::JobSubmission;
use thunderhead_core::package::Package;
use thunderhead_core::template::{NewTemplate, Template, TemplateEdit};
use thunderhead_core::view::{
    AddNodes, JobView, NodeActionRequest, NodeActionResult, NodeView, PackageView, SubmitReply, TaskView, TemplateView,
};
use thunderhead_core::{Error, JobId, Millis};
use thunderhead_proto::{JoinReply, JoinRequest};
use tokio::sync::oneshot;

/// Where the actor sends the answer to one request: a value of the request's own type, or the
/// error the cluster refused it with. It is answered once the request's changes are durable.
pub struct Reply<T>(pub(super) oneshot::Sender<Result<T, Error>>);

impl<T: Send + 'static> Reply<T> {
    /// Answers with `answer` once the batch is committed.
    pub(super) fn send(self, follow_ups: &mut Vec<FollowUp>, answer: Result<T, Error>) {
        follow_ups.push(Box::new(move || {
            let _ = self.0.send(answer);
        }));
    }
}

/// A request shows only its kind: its fields may hold secrets.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// What the API asks of the cluster; each request carries where its typed answer goes.
pub enum Request {
    CreateTemplate(NewTemplate, Reply<TemplateView>),
    EditTemplate(String, TemplateEdit, Reply<TemplateView>),
    ResumeTemplate(String, Reply<TemplateView>),
    DeleteTemplate(String, Reply<()>),
    ListTemplates(Reply<Vec<TemplateView>>),
    ShowTemplate(String, Reply<TemplateView>),
    /// The template with its settings, for a provider check.
    TemplateForCheck(String, Reply<Template>),
    /// What the head node holds of a set at its provider, to tell leftovers.
    Holdings(String, Reply<thunderhead_core::cluster::Holdings>),
    AddNodes(AddNodes, Reply<Vec<NodeView>>),
    NodeAction(NodeActionRequest, Reply<Vec<NodeActionResult>>),
    ListNodes(Option<String>, Reply<Vec<NodeView>>),
    ShowNode(String, Reply<NodeView>),
    /// Checks that a node or proxy of this name exists, for its log.
    CheckLogName(String, Reply<()>),
    Submit(JobSubmission, Reply<SubmitReply>),
    CancelJob(JobId, Reply<JobView>),
    /// Requeues an ended job's failed and canceled tasks: (index, last attempt) of each, read
    /// while the job had ended at `ended_at`.
    RequeueJob {
        id: JobId,
        ended_at: Option<u64>,
        ended: Vec<(u64, u32)>,
        reply: Reply<JobView>,
    },
    /// The tasks running on a node and those that ended there last; of one owner's jobs only
    /// when an owner is given.
    NodeTasks {
        node: String,
        owner: Option<String>,
        reply: Reply<Vec<TaskView>>,
    },
    ListJobs(Reply<Vec<JobView>>),
    ShowJob(JobId, Reply<JobView>),
    /// Checks that the job has such a task; answers with the job.
    CheckTask(JobId, u64, Reply<JobView>),
    /// The next version of a package and the blob store it goes to (`None`: the head node's).
    ReservePackage {
        name: String,
        file: String,
        template: Option<String>,
        reply: Reply<(u32, Option<String>)>,
    },
    RegisterPackage(Package, Reply<PackageView>),
    /// Hands out a job id ahead of its submission, reserved for `owner`.
    ReserveJob {
        owner: String,
        reply: Reply<SubmitReply>,
    },
    /// Who reserved a job id for a submission to come, if anyone did.
    ReservedBy(JobId, Reply<Option<String>>),
    /// The owner of a job, or whoever reserved its id; `None` if neither.
    JobOwner(JobId, Reply<Option<String>>),
    ListPackages(Reply<Vec<PackageView>>),
    ShowPackage(String, Reply<Vec<PackageView>>),
    PackageFile(String, Option<u32>, Reply<Package>),
    /// Removes a package's records (one version, or all); answers with the removed ones, whose
    /// files are for the caller to delete.
    RemovePackage(String, Option<u32>, Reply<Vec<Package>>),
    InstallPackages(String, Reply<Vec<NodeActionResult>>),
    /// Closes the connections of a node's agent; answers with how many were closed.
    DisconnectNode(String, String, Reply<usize>),
    /// Whether the agent of a node may read or write a location: its tasks must name it.
    AgentMayUse {
        node: String,
        location: String,
        use_: FileUse,
        reply: Reply<()>,
    },
    AddUser {
        name: String,
        role: Role,
        reply: Reply<Shown<UserView>>,
    },
    /// Gives a user a new token.
    RotateToken(String, Reply<Shown<UserView>>),
    /// Removes a user; `by`, who asks, may not remove themself.
    RemoveUser {
        name: String,
        by: String,
        reply: Reply<UserView>,
    },
    CreateJoinToken {
        template: Option<String>,
        ttl: Millis,
        reply: Reply<Shown<JoinTokenView>>,
    },
    DeleteJoinToken(String, Reply<()>),
    /// Revokes a node's certificates and closes its agent's connections: (revoked, closed).
    RevokeNode(String, Reply<(usize, usize)>),
    /// Records a node certificate made for a join request, if the request still holds.
    Join {
        request: JoinRequest,
        issued: Issued,
        reply: Reply<JoinReply>,
    },
}

impl Request {
    /// The request's name, for messages: never its fields, which may hold secrets.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::CreateTemplate(..) => "CreateTemplate",
            Request::EditTemplate(..) => "EditTemplate",
            Request::ResumeTemplate(..) => "ResumeTemplate",
            Request::DeleteTemplate(..) => "DeleteTemplate",
            Request::ListTemplates(..) => "ListTemplates",
            Request::ShowTemplate(..) => "ShowTemplate",
            Request::TemplateForCheck(..) => "TemplateForCheck",
            Request::Holdings(..) => "Holdings",
            Request::AddNodes(..) => "AddNodes",
            Request::NodeAction(..) => "NodeAction",
            Request::ListNodes(..) => "ListNodes",
            Request::ShowNode(..) => "ShowNode",
            Request::CheckLogName(..) => "CheckLogName",
            Request::Submit(..) => "Submit",
            Request::CancelJob(..) => "CancelJob",
            Request::RequeueJob { .. } => "RequeueJob",
            Request::NodeTasks { .. } => "NodeTasks",
            Request::ListJobs(..) => "ListJobs",
            Request::ShowJob(..) => "ShowJob",
            Request::CheckTask(..) => "CheckTask",
            Request::ReservePackage { .. } => "ReservePackage",
            Request::RegisterPackage(..) => "RegisterPackage",
            Request::ReserveJob { .. } => "ReserveJob",
            Request::ReservedBy(..) => "ReservedBy",
            Request::JobOwner(..) => "JobOwner",
            Request::ListPackages(..) => "ListPackages",
            Request::ShowPackage(..) => "ShowPackage",
            Request::PackageFile(..) => "PackageFile",
            Request::RemovePackage(..) => "RemovePackage",
            Request::InstallPackages(..) => "InstallPackages",
            Request::DisconnectNode(..) => "DisconnectNode",
            Request::AgentMayUse { .. } => "AgentMayUse",
            Request::AddUser { .. } => "AddUser",
            Request::RotateToken(..) => "RotateToken",
            Request::RemoveUser { .. } => "RemoveUser",
            Request::CreateJoinToken { .. } => "CreateJoinToken",
            Request::DeleteJoinToken(..) => "DeleteJoinToken",
            Request::RevokeNode(..) => "RevokeNode",
            Request::Join { .. } => "Join",
        }
    }
}

impl Actor {
    pub(super) fn request(&mut self, request: Request, fx: &mut Effects, follow_ups: &mut Vec<FollowUp>, now: u64) {
        let c = &mut self.cluster;
        let f = follow_ups;
        match request {
            Request::CreateTemplate(t, reply) => reply.send(f, c.create_template(fx, t, now)),
            Request::EditTemplate(name, edit, reply) => reply.send(f, c.edit_template(fx, &name, edit, now)),
            Request::ResumeTemplate(name, reply) => reply.send(f, c.resume_template(fx, &name)),
            Request::DeleteTemplate(name, reply) => reply.send(f, c.delete_template(fx, &name)),
            Request::ListTemplates(reply) => reply.send(f, Ok(c.templates())),
            Request::ShowTemplate(name, reply) => reply.send(f, c.template(&name)),
            Request::TemplateForCheck(name, reply) => reply.send(f, c.template_record(&name)),
            Request::Holdings(name, reply) => reply.send(f, c.holdings(&name)),
            Request::AddNodes(req, reply) => reply.send(f, c.add_nodes(fx, req, now)),
            Request::NodeAction(req, reply) => reply.send(f, c.node_action(fx, req, now)),
            Request::ListNodes(template, reply) => reply.send(f, c.nodes(template.as_deref())),
            Request::ShowNode(name, reply) => reply.send(f, c.node(&name)),
            Request::DisconnectNode(name, reason, reply) => reply.send(f, Ok(c.disconnect_node(fx, &name, &reason))),
            Request::CheckLogName(name, reply) => {
                let known = if c.is_proxy(&name) { Ok(()) } else { c.node(&name).map(drop) };
                reply.send(f, known)
            }
            Request::Submit(job, reply) => reply.send(f, self.submit_job(fx, job, now)),
            Request::CancelJob(id, reply) => reply.send(f, c.cancel_job(fx, id, now)),
            Request::RequeueJob { id, ended_at, ended, reply } => {
                reply.send(f, c.requeue_job(fx, id, ended_at, &ended))
            }
            Request::NodeTasks { node, owner, reply } => reply.send(f, c.node_tasks(&node, owner.as_deref())),
            Request::ListJobs(reply) => reply.send(f, Ok(c.jobs())),
            Request::ShowJob(id, reply) => reply.send(f, c.job(id)),
            Request::ReservePackage { name, file, template, reply } => {
                reply.send(f, c.reserve_package_version(&name, &file, template.as_deref()))
            }
            Request::RegisterPackage(p, reply) => reply.send(f, c.register_package(fx, p)),
            Request::ReserveJob { owner, reply } => reply.send(f, Ok(self.reserve_job(fx, owner))),
            Request::ReservedBy(id, reply) => reply.send(f, Ok(self.reserved.get(&id).cloned())),
            Request::JobOwner(id, reply) => reply.send(f, Ok(self.job_owner(id))),
            Request::ListPackages(reply) => reply.send(f, Ok(c.packages_list())),
            Request::ShowPackage(name, reply) => reply.send(f, c.package(&name)),
            Request::PackageFile(name, version, reply) => reply.send(f, c.package_file(&name, version)),
            Request::RemovePackage(name, version, reply) => reply.send(f, c.remove_package(fx, &name, version)),
            Request::InstallPackages(template, reply) => reply.send(f, c.install_packages(fx, &template, now)),
            Request::AgentMayUse { node, location, use_, reply } => {
                reply.send(f, c.agent_may_use(&node, &location, use_))
            }
            Request::CheckTask(id, index, reply) => reply.send(f, c.check_task(id, index).and_then(|()| c.job(id))),
            Request::AddUser { name, role, reply } => reply.send(f, self.add_user(fx, &name, role, now)),
            Request::RotateToken(name, reply) => reply.send(f, self.rotate_token(fx, &name, now)),
            Request::RemoveUser { name, by, reply } => reply.send(f, self.remove_user(fx, &name, &by)),
            Request::CreateJoinToken { template, ttl, reply } => {
                reply.send(f, self.create_join_token(fx, template, ttl, now))
            }
            Request::DeleteJoinToken(id, reply) => reply.send(f, self.delete_join_token(fx, &id)),
            Request::RevokeNode(node, reply) => reply.send(f, self.revoke_node(fx, &node)),
            Request::Join { request, issued, reply } => reply.send(f, self.join(fx, &request, issued, now)),
        }
    }
}
