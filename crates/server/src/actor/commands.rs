//! What the actor does once a batch is durable: the core's commands become follow-ups that
//! message agents and call providers, whose answers come back to the actor as events.

use super::{Actor, Event, Outbound};
use crate::commit::FollowUp;
use crate::now_millis;
use std::sync::Arc;
use std::time::Duration;
use thunderhead_core::TaskKey;
use thunderhead_core::cluster::{Command, DeployFailure, SessionId, TaskAttempt};
use thunderhead_core::persist::Op;
use thunderhead_core::template::Template;
use thunderhead_proto::{Assignment, ServerMsg, TaskRef};
use thunderhead_providers::{DeployRequest, Provider, ProviderError, ProxyRequest, Secret, Secrets, Set};

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

/// The core's name of the task attempt an agent reports on.
/// The core's name of the task attempt an agent reports on.
pub fn task_attempt(t: TaskRef) -> TaskAttempt {
    TaskAttempt { key: TaskKey { job: t.job, index: t.index }, attempt: t.attempt }
}

impl Actor {
    /// The template's provider and the template with its secret settings opened, or why the
    /// call cannot be made.
    pub(super) fn provider_for(&self, template: Template) -> Result<(Arc<dyn Provider>, Set), ProviderError> {
        let provider = self.providers.get(&template.provider).ok_or_else(|| unavailable(&template.provider))?;
        let secrets = open_secrets(&self.secrets, &template)?;
        Ok((provider, Set { template, secrets }))
    }

    /// A follow-up that runs `call` with the template's provider and its set (or why there is
    /// none) on the runtime, and sends the event it makes back to the actor.
    fn provider_call<F, Fut>(&self, template: Template, call: F) -> Option<FollowUp>
    where
        F: FnOnce(Result<(Arc<dyn Provider>, Set), ProviderError>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Event> + Send + 'static,
    {
        let found = self.provider_for(template);
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
    pub(super) fn follow_up(&mut self, command: Command, ops: &mut Vec<Op>) -> Option<FollowUp> {
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
                let server_url = self.url.clone();
                self.provider_call(template, move |p| async move {
                    let result = match p {
                        Ok((p, set)) => {
                            let request =
                                ProxyRequest { proxy: proxy.clone(), template: set.template, server_url, address };
                            bounded(DEPLOY_TIMEOUT, "deploy", p.deploy_proxy(&request)).await
                        }
                        Err(e) => Err(e),
                    };
                    Event::ProxyDeployed { proxy, result: result.map_err(|e| e.message) }
                })
            }
            Command::RemoveProxy { proxy, template, handle } => self.provider_call(template, move |p| async move {
                let result = match p {
                    Ok((p, set)) => bounded(REMOVE_TIMEOUT, "remove", p.remove(&set, &handle)).await,
                    Err(e) => Err(e),
                };
                Event::ProxyRemoved { proxy, handle, result: result.map_err(|e| e.message) }
            }),
            Command::Deploy { node, template, size, via } => {
                // Agents of burst nodes reach the head node through their set's proxies, if it
                // runs any.
                let server_url = if via.is_empty() { self.url.clone() } else { via.join(",") };
                let join = self.join_grant(ops, &node, &template.name, now_millis());
                self.provider_call(template, move |p| async move {
                    let result = match p {
                        Ok((p, Set { template, secrets })) => {
                            let request =
                                DeployRequest { node: node.clone(), template, secrets, size, server_url, join };
                            bounded(DEPLOY_TIMEOUT, "deploy", p.deploy(&request)).await
                        }
                        Err(e) => Err(e),
                    };
                    let result = result.map_err(|e| DeployFailure { message: e.message, transient: e.transient });
                    Event::Deployed { node, result }
                })
            }
            Command::Remove { node, template, handle } => self.provider_call(template, move |p| async move {
                let result = match p {
                    Ok((p, set)) => bounded(REMOVE_TIMEOUT, "remove", p.remove(&set, &handle)).await,
                    Err(e) => Err(e),
                };
                Event::Removed { node, handle, result: result.map_err(|e| e.message) }
            }),
        }
    }
}

/// Opens a template's sealed secret settings for a provider call. A template without any has
/// none; sealed ones that do not open (another head node's key) fail the call with the fix.
pub fn open_secrets(key: &crate::secrets::SecretKey, template: &Template) -> Result<Secrets, ProviderError> {
    let Some(sealed) = &template.sealed else {
        return Ok(Secrets::new());
    };
    let refused = || {
        ProviderError::fatal(format!(
            "the secret settings of template {} do not open with this head node's key (give them again: thunderhead \
             template edit {} --secret KEY=FILE)",
            template.name, template.name
        ))
    };
    let plain = key.open(sealed).ok_or_else(refused)?;
    let map: std::collections::BTreeMap<String, String> = serde_json::from_slice(&plain).map_err(|_| refused())?;
    Ok(map.into_iter().map(|(k, v)| (k, Secret(v))).collect())
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
