//! Routes of join tokens and node certificates, and the join itself, by which an agent trades
//! a join token for its certificate; the actor records the changes.

use super::{Answer, Api, ApiError, ask, blocking, enrolment_of};
use crate::actor::Request;
use crate::tls::Peer;
use crate::users::Shown;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use serde::Deserialize;
use thunderhead_core::Error;
use thunderhead_core::access::JoinTokenView;

pub(super) async fn list_join_tokens(State(api): State<Api>) -> Answer<Vec<JoinTokenView>> {
    Ok(Json(enrolment_of(&api)?.list_tokens()))
}

#[derive(Deserialize)]
pub(super) struct NewJoinToken {
    /// Only nodes of this template may join with it.
    template: Option<String>,
    /// How long it is honoured; default one day.
    expires_in_secs: Option<u64>,
}

/// A join token, shown this once.
pub(super) async fn create_join_token(
    State(api): State<Api>,
    body: Result<Json<NewJoinToken>, JsonRejection>,
) -> Answer<Shown<JoinTokenView>> {
    let NewJoinToken { template, expires_in_secs } = body?.0;
    enrolment_of(&api)?;
    if let Some(t) = &template {
        api.handle.ask(|r| Request::ShowTemplate(t.clone(), r)).await?;
    }
    let secs = expires_in_secs.unwrap_or(24 * 3600);
    if secs == 0 || secs > 366 * 24 * 3600 {
        return Err(Error::invalid(format!(
            "a join token lasting {secs} s is not allowed (give 1 s to 366 days, e.g. --expires 24h)"
        ))
        .into());
    }
    ask(&api, |reply| Request::CreateJoinToken { template, ttl: secs * 1000, reply }).await
}

pub(super) async fn delete_join_token(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    enrolment_of(&api)?;
    api.handle.ask(|r| Request::DeleteJoinToken(id.clone(), r)).await?;
    Ok(Json(serde_json::json!({"id": id})))
}

/// Revokes a node's certificates and closes its agent's connection: it is refused from then on,
/// until it joins again with a new token.
pub(super) async fn revoke_node(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    enrolment_of(&api)?;
    let (revoked, closed) = api.handle.ask(|r| Request::RevokeNode(name.clone(), r)).await?;
    Ok(Json(serde_json::json!({"node": name, "revoked": revoked, "disconnected": closed})))
}

/// An agent trades its join token for a node certificate.
pub(super) async fn join(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<thunderhead_proto::JoinRequest>, JsonRejection>,
) -> Answer<thunderhead_proto::JoinReply> {
    let request = body?.0;
    let enrolment = enrolment_of(&api)?;
    let name = request.name.clone();
    let joined = async {
        // The token is checked before a certificate is made for it, and again by the actor,
        // which records the certificate; making its key is left off the actor.
        enrolment.check_join(&request)?;
        let node = request.name.clone();
        let issued = blocking(move || enrolment.ca.issue_node(&node)).await?.map_err(Error::conflict)?;
        api.handle.ask(|reply| Request::Join { request, issued, reply }).await.map_err(ApiError)
    };
    match joined.await {
        Ok(reply) => Ok(Json(reply)),
        Err(e) => {
            tracing::warn!(peer = %peer.addr, node = %name, reason = %e.0.message, "refused a join");
            Err(e)
        }
    }
}
