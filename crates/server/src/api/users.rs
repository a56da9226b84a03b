//! Routes of users and their API tokens; the actor records the changes.

use super::{Answer, Api, ask};
use crate::actor::Request;
use crate::users::Shown;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use thunderhead_core::access::{self, Caller, Role, UserView};

pub(super) async fn whoami(Extension(caller): Extension<Caller>) -> Json<Caller> {
    Json(caller)
}

pub(super) async fn list_users(State(api): State<Api>) -> Json<Vec<UserView>> {
    Json(api.users.list().iter().map(UserView::from).collect())
}

#[derive(Deserialize)]
pub(super) struct NewUser {
    name: String,
    role: String,
}

/// Adds a user (durably, before answering) and answers with their token, the only time it is
/// shown.
pub(super) async fn add_user(
    State(api): State<Api>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Answer<Shown<UserView>> {
    let NewUser { name, role } = body?.0;
    access::check_user_name(&name)?;
    let role = Role::parse(&role)?;
    ask(&api, |reply| Request::AddUser { name, role, reply }).await
}

pub(super) async fn rotate_token(State(api): State<Api>, Path(name): Path<String>) -> Answer<Shown<UserView>> {
    ask(&api, |r| Request::RotateToken(name, r)).await
}

pub(super) async fn remove_user(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer<UserView> {
    ask(&api, |reply| Request::RemoveUser { name, by: caller.name, reply }).await
}
