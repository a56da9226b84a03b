//! The actor: the one task that owns the [`Cluster`]. It turns events into handler calls, ends
//! each batch with a scheduling round, and hands the batch to the commit thread together with
//! what must happen after the commit.

mod access;

use crate::commit::{self, Batch, FollowUp};
use crate::enrol::Enrolment;
use crate::now_millis;
use crate::tls::Issued;
use crate::users::{Shown, Users};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use thunderhead_core::access::{FileUse, JoinTokenView, Role, UserView};
use thunderhead_core::cluster::{Cluster, Command, DeployFailure, Effects, Hello, SessionId, TaskAttempt, TaskResult};
use thunderhead_core::feed::{Generations, Topics};
use thunderhead_core::job::JobSubmission;
use thunderhead_core::package::Package;
use thunderhead_core::persist::Op;
use thunderhead_core::template::{NewTemplate, Template, TemplateEdit};
use thunderhead_core::view::{
    AddNodes, JobView, NodeActionRequest, NodeActionResult, NodeView, PackageView, SubmitReply, TaskView, TemplateView,
};
use thunderhead_core::{Error, JobId, Millis, TaskKey};
use thunderhead_proto::{Assignment, JoinReply, JoinRequest, ServerMsg, TaskRef};
use thunderhead_providers::{DeployRequest, ProviderError, Providers, ProxyRequest};
use thunderhead_store::Store;
use tokio::sync::{mpsc, oneshot, watch};

/// The most events handled in one batch.
const MAX_BATCH: usize = 4096;

/// How often (in one-second ticks) deployments without a connected agent are checked with
/// their provider.
const PROBE_EVERY_TICKS: u64 = 2;

/// How often changed node measurements are announced to live clients, in ticks (seconds).
const MEASUREMENTS_EVERY_TICKS: u64 = 5;

/// Where the actor sends the answer to one request: a value of the request's own type, or the
/// error the cluster refused it with. It is answered once the request's changes are durable.
pub struct Reply<T>(oneshot::Sender<Result<T, Error>>);

impl<T: Send + 'static> Reply<T> {
    /// Answers with `answer` once the batch is committed.
    fn send(self, follow_ups: &mut Vec<FollowUp>, answer: Result<T, Error>) {
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

/// Messages to one agent connection.
#[derive(Debug)]
pub enum Outbound {
    Msg(ServerMsg),
    Close(String),
}

pub type AgentTx = mpsc::UnboundedSender<Outbound>;

/// Where the actor says why a request failed when its handler panicked: the request's own
/// [`Reply`] went down with the handler, so the failure is told on this untyped channel.
type Failed = oneshot::Sender<Error>;

pub enum Event {
    Api(Box<Request>, Failed),
    AgentHello { session: SessionId, hello: Hello, tx: AgentTx },
    AgentResults { session: SessionId, results: Vec<TaskResult> },
    AgentHeard { session: SessionId, metrics: Option<thunderhead_core::view::NodeMetrics> },
    AgentInstalled { session: SessionId, results: Vec<thunderhead_core::cluster::packages::Installed> },
    AgentGone { session: SessionId },
    Deployed { node: String, result: Result<Value, DeployFailure> },
    Removed { node: String, handle: Value, result: Result<(), String> },
    DeploymentGone { node: String, handle: Value },
    ProxyDeployed { proxy: String, result: Result<(Value, String), String> },
    ProxyRemoved { proxy: String, handle: Value, result: Result<(), String> },
    Tick,
}

/// A cloneable handle that sends events to the actor.
#[derive(Clone)]
pub struct Handle {
    events: mpsc::UnboundedSender<Event>,
    changes: watch::Receiver<Generations>,
}

impl Handle {
    pub fn send(&self, event: Event) {
        // The actor lives as long as the process; a failed send means the process is ending.
        let _ = self.events.send(event);
    }

    /// Follows what changes, by topic, for live clients.
    pub fn follow(&self) -> watch::Receiver<Generations> {
        self.changes.clone()
    }

    /// Sends the request `request` makes with its reply, and waits for the answer, which arrives
    /// once the request is durable: `handle.ask(|r| Request::ShowJob(id, r))`.
    pub async fn ask<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let (failed, failure) = oneshot::channel();
        self.send(Event::Api(Box::new(request(Reply(tx))), failed));
        match rx.await {
            Ok(answer) => answer,
            // The reply was dropped unanswered: its handler panicked (the failure says so), or
            // the actor is gone.
            Err(_) => Err(failure.await.unwrap_or_else(|_| Error::conflict("the head node is shutting down"))),
        }
    }
}

struct Actor {
    cluster: Cluster,
    commits: std::sync::mpsc::Sender<Batch>,
    agents: HashMap<SessionId, AgentTx>,
    providers: Providers,
    url: String,
    /// Join tokens and node certificates; `None` over plain HTTP.
    enrolment: Option<Arc<Enrolment>>,
    /// The users and their tokens, which the API reads to check every request.
    users: Arc<Users>,
    /// Who reserved each job id handed out ahead of its submission, until it is submitted.
    /// Kept in memory only: the ids themselves are durable (never handed out twice), but an
    /// owner is not, so after a restart only an administrator may submit to an old reservation.
    reserved: HashMap<JobId, String>,
    events: mpsc::UnboundedSender<Event>,
    runtime: tokio::runtime::Handle,
    ticks: u64,
    /// Announces each batch's changes to live clients, once they are durable.
    changes: Arc<watch::Sender<Generations>>,
    /// What this batch changed beyond its ops (agents connecting, measurements).
    touched: Topics,
    /// Measurements changed since they were last announced (at most every few seconds).
    measured: bool,
}

pub fn spawn(
    cluster: Cluster,
    startup: Effects,
    store: Arc<dyn Store>,
    providers: Providers,
    url: String,
    enrolment: Option<Arc<Enrolment>>,
    users: Arc<Users>,
) -> Handle {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (changes, following) = watch::channel(Generations::default());
    let mut actor = Actor {
        cluster,
        commits: commit::spawn(store),
        agents: HashMap::new(),
        providers,
        url,
        enrolment,
        users,
        reserved: HashMap::new(),
        events: tx.clone(),
        runtime: tokio::runtime::Handle::current(),
        ticks: 0,
        changes: Arc::new(changes),
        touched: Topics::NONE,
        measured: false,
    };
    let ticks = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if ticks.send(Event::Tick).is_err() {
                return;
            }
        }
    });

    tokio::spawn(async move {
        let mut fx = startup;
        let mut follow_ups: Vec<FollowUp> = Vec::new();
        loop {
            let now = now_millis();
            let _ = guarded(&|| "the end of a batch (scheduling)".into(), || actor.cluster.end_batch(&mut fx, now));
            actor.announce(&fx, &mut follow_ups);
            actor.submit(std::mem::take(&mut fx), std::mem::take(&mut follow_ups));
            let Some(first) = rx.recv().await else { return };
            let now = now_millis();
            actor.handle(first, &mut fx, &mut follow_ups, now);
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Ok(event) => actor.handle(event, &mut fx, &mut follow_ups, now),
                    Err(_) => break,
                }
            }
        }
    });
    Handle { events: tx, changes: following }
}

/// The longest a provider may take to deploy one node.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The longest a provider may take to remove one node.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A provider call that gives up after `limit`, so no node waits forever on a provider that
/// does not answer.
async fn bounded<T>(
    limit: Duration,
    verb: &str,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            Err(ProviderError::transient(format!("the provider did not {verb} the node within {} s", limit.as_secs())))
        }
    }
}

fn unavailable(provider: &str) -> ProviderError {
    ProviderError::fatal(format!("provider {provider} is not available in this build"))
}

/// The most bytes of commands, environment and staging one assignment message carries, well
/// inside the frame limit agents accept.
const ASSIGN_BYTES: usize = thunderhead_proto::MAX_MESSAGE_BYTES / 4;

/// Splits assignments into messages of at most [`ASSIGN_BYTES`] each (a single task's limits keep
/// it far below that), so no message is too large for the agent to read.
fn assign_batches(tasks: Vec<Assignment>) -> Vec<Vec<Assignment>> {
    let size = |a: &Assignment| {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + 8).sum::<usize>();
        let pairs = |v: &[(String, String)]| v.iter().map(|(a, b)| a.len() + b.len() + 16).sum::<usize>();
        256 + strings(&a.command) + pairs(&a.env) + pairs(&a.inputs) + pairs(&a.outputs)
    };
    let mut batches = vec![];
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for task in tasks {
        let n = size(&task);
        if !batch.is_empty() && bytes + n > ASSIGN_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += n;
        batch.push(task);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

fn task_ref(t: TaskAttempt) -> TaskRef {
    TaskRef { job: t.key.job, index: t.key.index, attempt: t.attempt }
}

pub fn task_attempt(t: TaskRef) -> TaskAttempt {
    TaskAttempt { key: TaskKey { job: t.job, index: t.index }, attempt: t.attempt }
}

/// Runs `handle` and turns a panic inside it into an error that names what was being handled, so
/// one bad request, agent message or provider answer fails alone and the head node goes on. What
/// the handler changed before it panicked stays, with its ops: memory and store agree.
fn guarded<T>(what: &dyn Fn() -> String, handle: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handle)).map_err(|panic| {
        let cause = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let what = what();
        tracing::error!(event = %what, cause = %thunderhead_core::text::escape(&cause), "a handler panicked; the event was refused and the head node goes on");
        format!("{what} failed inside the head node ({}); nothing else was affected: please report it", thunderhead_core::text::escape(&cause))
    })
}

impl Actor {
    fn handle(&mut self, event: Event, fx: &mut Effects, follow_ups: &mut Vec<FollowUp>, now: u64) {
        match event {
            Event::Api(request, failed) => {
                let kind = request.kind();
                let what = || format!("the request {kind}");
                // A handler answers through the request's own reply; one that panics drops it,
                // and the failure is told, after the commit, on the request's failure channel.
                if let Err(message) = guarded(&what, || self.request(*request, fx, follow_ups, now)) {
                    follow_ups.push(Box::new(move || {
                        let _ = failed.send(Error::internal(message));
                    }));
                }
            }
            event => {
                let session = match &event {
                    Event::AgentHello { session, .. }
                    | Event::AgentResults { session, .. }
                    | Event::AgentHeard { session, .. }
                    | Event::AgentInstalled { session, .. }
                    | Event::AgentGone { session } => Some(*session),
                    _ => None,
                };
                let what = || match session {
                    Some(s) => format!("a message of agent session {s}"),
                    None => "a provider answer or timer".to_string(),
                };
                if let Err(message) = guarded(&what, || self.handle_other(event, fx, follow_ups, now))
                    && let Some(session) = session
                {
                    // The agent whose message could not be handled is let go; it reconnects and
                    // is reconciled like any agent that went away.
                    if let Some(tx) = self.agents.remove(&session) {
                        let _ = tx.send(Outbound::Close(message));
                    }
                    let _ = guarded(&what, || self.cluster.agent_gone(fx, session, now));
                }
            }
        }
    }

    fn handle_other(&mut self, event: Event, fx: &mut Effects, follow_ups: &mut Vec<FollowUp>, now: u64) {
        match event {
            Event::Api(..) => unreachable!("requests are handled by handle"),
            Event::AgentHello { session, hello, tx } => {
                self.touched |= Topics::NODES;
                let name = hello.name.clone();
                match self.cluster.agent_hello(fx, session, hello, now) {
                    Ok(node) => {
                        let heartbeat_secs = self.cluster.config().heartbeat_secs();
                        self.agents.insert(session, tx.clone());
                        tracing::info!(%node, session, "agent registered");
                        follow_ups.push(Box::new(move || {
                            let _ = tx.send(Outbound::Msg(ServerMsg::Welcome { node, heartbeat_secs }));
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, reason = %e, "agent refused");
                        let _ = tx.send(Outbound::Msg(ServerMsg::Refused { reason: e.message.clone() }));
                        let _ = tx.send(Outbound::Close(e.message));
                    }
                }
            }
            Event::AgentResults { session, results } => self.cluster.agent_results(fx, session, results, now),
            Event::AgentHeard { session, metrics } => {
                self.measured |= self.cluster.agent_heard(session, now, metrics);
            }
            Event::AgentInstalled { session, results } => self.cluster.agent_installed(fx, session, results, now),
            Event::AgentGone { session } => {
                self.touched |= Topics::NODES;
                self.agents.remove(&session);
                self.cluster.agent_gone(fx, session, now);
            }
            Event::Deployed { node, result } => self.cluster.deployed(fx, &node, result, now),
            Event::Removed { node, handle, result } => self.cluster.removed(fx, &node, &handle, result, now),
            Event::DeploymentGone { node, handle } if self.cluster.is_proxy(&node) => {
                self.cluster.proxy_gone(fx, &node, &handle, now)
            }
            Event::DeploymentGone { node, handle } => self.cluster.deployment_gone(fx, &node, &handle, now),
            Event::ProxyDeployed { proxy, result } => self.cluster.proxy_deployed(fx, &proxy, result, now),
            Event::ProxyRemoved { proxy, handle, result } => {
                self.cluster.proxy_removed(fx, &proxy, &handle, result, now)
            }
            Event::Tick => {
                self.cluster.tick(fx, now);
                self.ticks += 1;
                // Measurements change with nearly every heartbeat: pages hear of them every few
                // seconds, not at each one.
                if self.measured && self.ticks.is_multiple_of(MEASUREMENTS_EVERY_TICKS) {
                    self.measured = false;
                    self.touched |= Topics::NODES;
                }
                if self.ticks.is_multiple_of(PROBE_EVERY_TICKS) {
                    self.probe_deployments();
                }
            }
        }
    }

    fn request(&mut self, request: Request, fx: &mut Effects, follow_ups: &mut Vec<FollowUp>, now: u64) {
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

    /// Asks the providers about deployments whose agent is not connected; gone ones come back
    /// as events.
    fn probe_deployments(&self) {
        let mut by_provider: HashMap<String, Vec<(String, Value)>> = HashMap::new();
        for (node, template, handle) in self.cluster.deployments_to_probe() {
            by_provider.entry(template.provider).or_default().push((node, handle));
        }
        for (proxy, template, handle) in self.cluster.proxies_to_probe() {
            by_provider.entry(template.provider).or_default().push((proxy, handle));
        }
        for (provider, nodes) in by_provider {
            let Some(provider) = self.providers.get(&provider) else {
                continue;
            };
            let events = self.events.clone();
            self.runtime.spawn(async move {
                let handles: Vec<Value> = nodes.iter().map(|(_, h)| h.clone()).collect();
                let statuses = provider.status(&handles).await;
                for ((node, handle), status) in nodes.into_iter().zip(statuses) {
                    if status == Ok(thunderhead_providers::ExternalStatus::Gone) {
                        let _ = events.send(Event::DeploymentGone { node, handle });
                    }
                }
            });
        }
    }

    /// Tells live clients which topics this batch changed, once the batch is committed (so
    /// what they fetch next includes the change).
    fn announce(&mut self, fx: &Effects, follow_ups: &mut Vec<FollowUp>) {
        let topics = fx.ops.iter().fold(std::mem::take(&mut self.touched), |t, op| t | Topics::of(op));
        if !topics.is_empty() {
            let changes = self.changes.clone();
            follow_ups.push(Box::new(move || changes.send_modify(|g| g.bump(topics))));
        }
    }

    /// Turns the batch's commands into follow-ups and hands the batch to the commit thread.
    fn submit(&mut self, fx: Effects, mut follow_ups: Vec<FollowUp>) {
        let Effects { mut ops, commands } = fx;
        for command in commands {
            if let Some(f) = self.follow_up(command, &mut ops) {
                follow_ups.push(f);
            }
        }
        if ops.is_empty() && follow_ups.is_empty() {
            return;
        }
        let _ = self.commits.send(Batch { ops, follow_ups });
    }

    /// A follow-up that runs `call` with the named provider (or why there is none) on the
    /// runtime, and sends the event it makes back to the actor.
    fn provider_call<F, Fut>(&self, provider: &str, call: F) -> Option<FollowUp>
    where
        F: FnOnce(Result<std::sync::Arc<dyn thunderhead_providers::Provider>, ProviderError>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Event> + Send + 'static,
    {
        let found = self.providers.get(provider).ok_or_else(|| unavailable(provider));
        let (events, runtime) = (self.events.clone(), self.runtime.clone());
        Some(Box::new(move || {
            runtime.spawn(async move {
                let _ = events.send(call(found).await);
            });
        }))
    }

    fn to_agent(&self, session: SessionId, msg: Outbound) -> Option<FollowUp> {
        let tx = self.agents.get(&session)?.clone();
        Some(Box::new(move || {
            let _ = tx.send(msg);
        }))
    }

    /// The follow-up that carries out `command` once the batch is durable; ops the command
    /// needs first (a deployment's join token) go to `ops`.
    fn follow_up(&mut self, command: Command, ops: &mut Vec<Op>) -> Option<FollowUp> {
        match command {
            Command::Assign { session, tasks } => {
                let tasks = tasks
                    .into_iter()
                    .map(|d| Assignment {
                        task: TaskRef { job: d.key.job, index: d.key.index, attempt: d.attempt },
                        command: d.command,
                        env: d.env,
                        cores: d.cores,
                        inputs: d.staging.inputs.into_iter().map(|i| (i.source, i.local)).collect(),
                        outputs: d
                            .staging
                            .outputs
                            .into_iter()
                            .map(|o| (o.glob, o.prefix.unwrap_or_default()))
                            .collect(),
                        upload_on: match d.staging.upload_on {
                            thunderhead_core::staging::UploadOn::Success => "success",
                            thunderhead_core::staging::UploadOn::Failure => "failure",
                            thunderhead_core::staging::UploadOn::Always => "always",
                        }
                        .to_string(),
                    })
                    .collect();
                let tx = self.agents.get(&session)?.clone();
                let batches = assign_batches(tasks);
                Some(Box::new(move || {
                    for tasks in batches {
                        let _ = tx.send(Outbound::Msg(ServerMsg::Assign { tasks }));
                    }
                }))
            }
            Command::Cancel { session, tasks } => {
                let tasks = tasks.into_iter().map(task_ref).collect();
                self.to_agent(session, Outbound::Msg(ServerMsg::Cancel { tasks }))
            }
            Command::Ack { session, tasks } => {
                let tasks = tasks.into_iter().map(task_ref).collect();
                self.to_agent(session, Outbound::Msg(ServerMsg::Ack { tasks }))
            }
            Command::Shutdown { session } => self.to_agent(session, Outbound::Msg(ServerMsg::Shutdown)),
            Command::Install { session, packages } => {
                let packages = packages
                    .into_iter()
                    .map(|p| thunderhead_proto::PackageRef {
                        key: p.key(),
                        location: p.location(),
                        name: p.name,
                        version: p.version,
                        sha256: p.sha256,
                        size: p.size,
                    })
                    .collect();
                self.to_agent(session, Outbound::Msg(ServerMsg::Install { packages }))
            }
            Command::Disconnect { session, reason } => {
                let f = self.to_agent(session, Outbound::Close(reason));
                self.agents.remove(&session);
                f
            }
            Command::DeployProxy { proxy, template, address } => {
                let request = ProxyRequest { proxy: proxy.clone(), template, server_url: self.url.clone(), address };
                self.provider_call(&request.template.provider.clone(), move |p| async move {
                    let result = match p {
                        Ok(p) => bounded(DEPLOY_TIMEOUT, "deploy", p.deploy_proxy(&request)).await,
                        Err(e) => Err(e),
                    };
                    Event::ProxyDeployed { proxy, result: result.map_err(|e| e.message) }
                })
            }
            Command::RemoveProxy { proxy, template, handle } => {
                self.provider_call(&template.provider, move |p| async move {
                    let result = match p {
                        Ok(p) => bounded(REMOVE_TIMEOUT, "remove", p.remove(&handle)).await,
                        Err(e) => Err(e),
                    };
                    Event::ProxyRemoved { proxy, handle, result: result.map_err(|e| e.message) }
                })
            }
            Command::Deploy { node, template, size, via } => {
                // Agents of burst nodes reach the head node through their set's proxies.
                let server_url = if via.is_empty() { self.url.clone() } else { via.join(",") };
                let join = self.join_grant(ops, &node, &template.name, now_millis());
                self.provider_call(&template.provider.clone(), move |p| async move {
                    let result = match p {
                        Ok(p) => {
                            let request = DeployRequest { node: node.clone(), template, size, server_url, join };
                            bounded(DEPLOY_TIMEOUT, "deploy", p.deploy(&request)).await
                        }
                        Err(e) => Err(e),
                    };
                    let result = result.map_err(|e| DeployFailure { message: e.message, transient: e.transient });
                    Event::Deployed { node, result }
                })
            }
            Command::Remove { node, template, handle } => self.provider_call(&template.provider, move |p| async move {
                let result = match p {
                    Ok(p) => bounded(REMOVE_TIMEOUT, "remove", p.remove(&handle)).await,
                    Err(e) => Err(e),
                };
                Event::Removed { node, handle, result: result.map_err(|e| e.message) }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(index: u64, arg_bytes: usize) -> Assignment {
        Assignment {
            task: TaskRef { job: 1, index, attempt: 1 },
            command: vec!["echo".into(), "x".repeat(arg_bytes)],
            env: vec![],
            cores: 1,
            inputs: vec![],
            outputs: vec![],
            upload_on: "success".into(),
        }
    }

    #[test]
    fn a_panicking_handler_fails_its_event_alone() {
        let what = || "the request Submit".to_string();
        let refused = guarded(&what, || -> u32 { panic!("index out of bounds: the len is 3") });
        let message = refused.unwrap_err();
        assert!(message.contains("the request Submit") && message.contains("index out of bounds"), "{message}");
        assert_eq!(guarded(&what, || 7), Ok(7), "a handler that returns is untouched");
    }

    #[test]
    fn large_assignments_are_split_into_messages_an_agent_can_read() {
        // 136 tasks of 128 KiB commands: 17 MiB in one message once cut an agent off for good.
        let tasks: Vec<Assignment> = (1..=136).map(|i| task(i, 128 * 1024)).collect();
        let batches = assign_batches(tasks);
        assert!(batches.len() >= 5, "{} messages", batches.len());
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 136);
        let indices: Vec<u64> = batches.iter().flatten().map(|a| a.task.index).collect();
        assert_eq!(indices, (1..=136).collect::<Vec<_>>(), "order kept");
        for batch in &batches {
            let encoded = serde_json::to_string(&ServerMsg::Assign { tasks: batch.clone() }).unwrap();
            assert!(encoded.len() <= thunderhead_proto::MAX_MESSAGE_BYTES / 2, "{} bytes", encoded.len());
        }
        assert_eq!(assign_batches((1..=50).map(|i| task(i, 10)).collect()).len(), 1, "small ones go together");
    }
}
