//! The actor: the one task that owns the [`Cluster`]. It turns events into handler calls, ends
//! each batch with a scheduling round, and hands the batch to the commit thread together with
//! what must happen after the commit.

mod access;
mod commands;
mod requests;

pub use commands::{open_secrets, task_attempt};
pub use requests::{Reply, Request};

use crate::commit::{self, Batch, FollowUp};
use crate::enrol::Enrolment;
use crate::now_millis;
use crate::secrets::SecretKey;
use crate::users::Users;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use thunderhead_core::cluster::{Cluster, DeployFailure, Effects, Hello, SessionId, TaskResult};
use thunderhead_core::feed::{Generations, Topics};
use thunderhead_core::template::Template;
use thunderhead_core::{Error, JobId};
use thunderhead_proto::ServerMsg;
use thunderhead_providers::{ExternalStatus, Providers};
use thunderhead_store::Store;
use tokio::sync::{mpsc, oneshot, watch};

/// The most events handled in one batch.
const MAX_BATCH: usize = 4096;

/// How often (in one-second ticks) deployments without a connected agent are checked with
/// their provider.
const PROBE_EVERY_TICKS: u64 = 2;
/// The longest a provider may take to answer one status call for a set.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often changed node measurements are announced to live clients, in ticks (seconds).
const MEASUREMENTS_EVERY_TICKS: u64 = 5;

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
    AgentHello {
        session: SessionId,
        hello: Hello,
        tx: AgentTx,
    },
    AgentResults {
        session: SessionId,
        results: Vec<TaskResult>,
    },
    AgentHeard {
        session: SessionId,
        metrics: Option<thunderhead_core::view::NodeMetrics>,
    },
    AgentInstalled {
        session: SessionId,
        results: Vec<thunderhead_core::cluster::packages::Installed>,
    },
    AgentGone {
        session: SessionId,
    },
    Deployed {
        node: String,
        result: Result<Value, DeployFailure>,
    },
    Removed {
        node: String,
        handle: Value,
        result: Result<(), String>,
    },
    /// A provider reports a deployment gone; `why` says what that means for it.
    DeploymentGone {
        node: String,
        handle: Value,
        why: &'static str,
    },
    /// A provider reports a deployment that exists but does not run yet, and why.
    DeploymentWaiting {
        node: String,
        handle: Value,
        reason: String,
    },
    ProxyDeployed {
        proxy: String,
        result: Result<(Value, String), String>,
    },
    ProxyRemoved {
        proxy: String,
        handle: Value,
        result: Result<(), String>,
    },
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
    /// Opens templates' secret settings for provider calls.
    secrets: Arc<SecretKey>,
    /// Templates whose deployments are being probed: one probe of a set at a time, so a slow
    /// provider is not asked again before it answered.
    probing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
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

/// What the actor works with besides the model: the store it commits to, the providers it
/// calls, the key that opens templates' secrets, its own URL, enrolment and the users.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub providers: Providers,
    pub secrets: Arc<SecretKey>,
    pub url: String,
    pub enrolment: Option<Arc<Enrolment>>,
    pub users: Arc<Users>,
}

pub fn spawn(cluster: Cluster, startup: Effects, parts: Parts) -> Handle {
    let Parts { store, providers, secrets, url, enrolment, users } = parts;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (changes, following) = watch::channel(Generations::default());
    let mut actor = Actor {
        cluster,
        commits: commit::spawn(store),
        agents: HashMap::new(),
        providers,
        secrets,
        probing: Default::default(),
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

/// Handles one request with `handle`, which answers through the request's own reply. A handler
/// that panics drops that reply; the request is then answered, after the commit like any
/// answer, with an internal error on its failure channel.
fn contain_request(
    kind: &str,
    failed: Failed,
    follow_ups: &mut Vec<FollowUp>,
    handle: impl FnOnce(&mut Vec<FollowUp>),
) {
    let what = || format!("the request {kind}");
    if let Err(message) = guarded(&what, || handle(follow_ups)) {
        follow_ups.push(Box::new(move || {
            let _ = failed.send(Error::internal(message));
        }));
    }
}

impl Actor {
    fn handle(&mut self, event: Event, fx: &mut Effects, follow_ups: &mut Vec<FollowUp>, now: u64) {
        match event {
            Event::Api(request, failed) => {
                contain_request(request.kind(), failed, follow_ups, |f| self.request(*request, fx, f, now))
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
            Event::DeploymentGone { node, handle, .. } if self.cluster.is_proxy(&node) => {
                self.cluster.proxy_gone(fx, &node, &handle, now)
            }
            Event::DeploymentGone { node, handle, why } => self.cluster.deployment_gone(fx, &node, &handle, why, now),
            Event::DeploymentWaiting { node, handle, reason } => {
                self.cluster.deployment_waiting(fx, &node, &handle, &reason, now)
            }
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

    /// Asks the providers about deployments whose agent is not connected, one call per set;
    /// gone and waiting ones come back as events.
    fn probe_deployments(&self) {
        let mut by_template: HashMap<String, (Template, Vec<(String, Value)>)> = HashMap::new();
        for (node, template, handle) in
            self.cluster.deployments_to_probe().into_iter().chain(self.cluster.proxies_to_probe())
        {
            by_template.entry(template.name.clone()).or_insert_with(|| (template, vec![])).1.push((node, handle));
        }
        for (name, (template, nodes)) in by_template {
            let Ok((provider, set)) = self.provider_for(template) else {
                continue;
            };
            if !self.probing.lock().expect("probes").insert(name.clone()) {
                continue;
            }
            let (events, probing) = (self.events.clone(), self.probing.clone());
            let why = provider.info().gone;
            self.runtime.spawn(async move {
                let handles: Vec<Value> = nodes.iter().map(|(_, h)| h.clone()).collect();
                let statuses = tokio::time::timeout(PROBE_TIMEOUT, provider.status(&set, &handles)).await;
                probing.lock().expect("probes").remove(&name);
                let Ok(statuses) = statuses else {
                    tracing::warn!(template = %name, "the provider did not answer a status call within {} s", PROBE_TIMEOUT.as_secs());
                    return;
                };
                for ((node, handle), status) in nodes.into_iter().zip(statuses) {
                    let _ = match status {
                        Ok(ExternalStatus::Gone) => events.send(Event::DeploymentGone { node, handle, why }),
                        Ok(ExternalStatus::Waiting(reason)) => {
                            events.send(Event::DeploymentWaiting { node, handle, reason })
                        }
                        Ok(ExternalStatus::Running) => Ok(()),
                        Err(e) => {
                            tracing::debug!(node = %node, error = %e, "a status call failed");
                            Ok(())
                        }
                    };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_fails_its_event_alone() {
        let what = || "the request Submit".to_string();
        let refused = guarded(&what, || -> u32 { panic!("index out of bounds: the len is 3") });
        let message = refused.unwrap_err();
        assert!(message.contains("the request Submit") && message.contains("index out of bounds"), "{message}");
        assert_eq!(guarded(&what, || 7), Ok(7), "a handler that returns is untouched");
    }

    /// A test handle, and the events it sends.
    fn handle() -> (Handle, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let (_, changes) = watch::channel(Generations::default());
        (Handle { events, changes }, rx)
    }

    #[tokio::test]
    async fn a_request_whose_handler_panics_is_answered_with_an_internal_error_after_the_commit() {
        let (handle, mut events) = handle();
        let asked = tokio::spawn(async move { handle.ask(Request::ListJobs).await });
        let Some(Event::Api(request, failed)) = events.recv().await else { panic!("a request") };
        let mut follow_ups = Vec::new();
        contain_request(request.kind(), failed, &mut follow_ups, |_| {
            let _reply_goes_down_with_the_handler = request;
            panic!("index out of bounds: the len is 3");
        });
        assert_eq!(follow_ups.len(), 1, "the failure waits for the commit");
        follow_ups.into_iter().for_each(|f| f());
        let error = asked.await.unwrap().unwrap_err();
        assert_eq!(error.kind, thunderhead_core::ErrorKind::Internal);
        assert!(
            error.message.contains("the request ListJobs") && error.message.contains("index out of bounds"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn a_request_is_answered_with_its_typed_reply_and_a_gone_actor_with_a_conflict() {
        let (handle, mut events) = handle();
        let asking = handle.clone();
        let asked = tokio::spawn(async move { asking.ask(|r| Request::ReservedBy(7, r)).await });
        let Some(Event::Api(request, failed)) = events.recv().await else { panic!("a request") };
        let mut follow_ups = Vec::new();
        contain_request(request.kind(), failed, &mut follow_ups, |f| match *request {
            Request::ReservedBy(7, reply) => reply.send(f, Ok(Some("alice".into()))),
            other => panic!("unexpected {other:?}"),
        });
        follow_ups.into_iter().for_each(|f| f());
        assert_eq!(asked.await.unwrap(), Ok(Some("alice".to_string())));
        drop(events);
        let error = handle.ask(Request::ListJobs).await.unwrap_err();
        assert_eq!(error.kind, thunderhead_core::ErrorKind::Conflict, "{}", error.message);
    }
}
