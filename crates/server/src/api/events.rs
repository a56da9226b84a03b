//! Server-sent events: live pages hear which topics changed.

use super::{Api, ApiError};
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thunderhead_core::Error;
use thunderhead_core::access::Caller;

/// How long a stream of events waits after a change for more, to send one event for a burst.
pub(super) const COALESCE: std::time::Duration = std::time::Duration::from_millis(250);

/// The most event streams one user may hold open: a page needs one, a user several pages.
pub(super) const STREAMS_PER_USER: usize = 16;

/// Counts an open event stream, in all and for its user, while it lives.
pub(super) struct StreamGuard {
    all: Arc<std::sync::atomic::AtomicUsize>,
    per_user: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl StreamGuard {
    /// Opens a stream for `user`, unless they hold [`STREAMS_PER_USER`] already.
    fn open(api: &Api, user: &str) -> Result<StreamGuard, ApiError> {
        let mut per_user = api.stream_users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = per_user.entry(user.to_string()).or_default();
        if *held >= STREAMS_PER_USER {
            return Err(Error::conflict(format!(
                "user {user} holds {held} event streams open already, the most one user may (close a page, or wait \
                 for a closed one to be noticed)"
            ))
            .into());
        }
        *held += 1;
        api.streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StreamGuard { all: api.streams.clone(), per_user: api.stream_users.clone(), user: user.to_string() })
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.all.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut per_user = self.per_user.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = per_user.get_mut(&self.user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

/// Server-sent events for live pages: `change` events whose data is `{"seq", "topics"}`, the
/// topics (`nodes`, `jobs`, `templates`, `packages`, `cost`) whose resources changed since the
/// last event. The first event names every topic. A burst of changes makes one event.
pub(super) async fn events(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use thunderhead_core::feed::{Generations, Topics};
    let start = (api.handle.follow(), None::<Generations>, StreamGuard::open(&api, &caller.name)?);
    let stream = futures_util::stream::unfold(start, |(mut changes, seen, guard)| async move {
        let (topics, now) = match seen {
            None => (Topics::ALL, *changes.borrow_and_update()),
            Some(seen) => loop {
                changes.changed().await.ok()?;
                tokio::time::sleep(COALESCE).await;
                let now = *changes.borrow_and_update();
                let topics = now.since(&seen);
                if !topics.is_empty() {
                    break (topics, now);
                }
            },
        };
        let data = serde_json::json!({"seq": now.seq(), "topics": topics.names()}).to_string();
        let event = Event::default().event("change").data(data);
        Some((Ok::<_, std::convert::Infallible>(event), (changes, Some(now), guard)))
    });
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))).into_response();
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}
