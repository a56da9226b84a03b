//! Routes of nodes: list, add, act on them, their log and the tasks on them.

use super::{Answer, Api, ask, blocking};
use crate::actor::Request;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use thunderhead_core::access::{Caller, Role};
use thunderhead_core::view::{AddNodes, NodeActionRequest, NodeActionResult, NodeLogEntry, NodeView, TaskView};

#[derive(Deserialize)]
pub(super) struct NodeFilter {
    template: Option<String>,
}

pub(super) async fn list_nodes(State(api): State<Api>, Query(filter): Query<NodeFilter>) -> Answer<Vec<NodeView>> {
    ask(&api, |r| Request::ListNodes(filter.template, r)).await
}

pub(super) async fn add_nodes(
    State(api): State<Api>,
    body: Result<Json<AddNodes>, JsonRejection>,
) -> Answer<Vec<NodeView>> {
    let req = body?.0;
    ask(&api, |r| Request::AddNodes(req, r)).await
}

pub(super) async fn node_action(
    State(api): State<Api>,
    body: Result<Json<NodeActionRequest>, JsonRejection>,
) -> Answer<Vec<NodeActionResult>> {
    let req = body?.0;
    ask(&api, |r| Request::NodeAction(req, r)).await
}

pub(super) async fn show_node(State(api): State<Api>, Path(name): Path<String>) -> Answer<NodeView> {
    ask(&api, |r| Request::ShowNode(name, r)).await
}

pub(super) async fn node_log(State(api): State<Api>, Path(name): Path<String>) -> Answer<Vec<NodeLogEntry>> {
    // A proxy's log outlives the proxy: answer with it while there is one.
    let known = api.handle.ask(|r| Request::CheckLogName(name.clone(), r)).await;
    let store = api.store.clone();
    let log = blocking(move || store.node_log(&name)).await??;
    if let Err(e) = known
        && log.is_empty()
    {
        return Err(e.into());
    }
    Ok(Json(log))
}

/// The tasks running on a node and the last that ended there; a User sees only their own.
pub(super) async fn node_tasks(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer<Vec<TaskView>> {
    // The same rule as `Caller::may_manage_job`, applied by the cluster, which knows each
    // task's owner.
    let owner = (caller.role < Role::JobAdministrator).then(|| caller.name.clone());
    ask(&api, |reply| Request::NodeTasks { node: name, owner, reply }).await
}
