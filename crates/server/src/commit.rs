//! The commit thread: makes batches durable, then lets their effects out.
//!
//! Batches arrive in order. The thread takes every batch that is waiting, applies all their ops
//! in one transaction (group commit), and only then runs each batch's follow-ups: answers to
//! clients, messages to agents, provider calls. A failed commit stops the head node: its memory
//! no longer matches its disk, and a restart recovers from the disk.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use thunderhead_core::persist::Op;
use thunderhead_store::Store;

/// Something to do once the batch it belongs to is durable.
pub type FollowUp = Box<dyn FnOnce() + Send>;

pub struct Batch {
    pub ops: Vec<Op>,
    pub follow_ups: Vec<FollowUp>,
}

pub fn spawn(store: Arc<dyn Store>) -> Sender<Batch> {
    let (tx, rx) = channel::<Batch>();
    std::thread::Builder::new()
        .name("commit".into())
        .spawn(move || commit_forever(store, rx))
        .expect("spawn the commit thread");
    tx
}

fn commit_forever(store: Arc<dyn Store>, rx: Receiver<Batch>) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let ops: Vec<Op> = batches.iter_mut().flat_map(|b| std::mem::take(&mut b.ops)).collect();
        if let Err(e) = store.apply(&ops) {
            tracing::error!(error = %e, "cannot commit to the state database; stopping the head node to protect its state");
            std::process::exit(70);
        }
        for follow_up in batches.into_iter().flat_map(|b| b.follow_ups) {
            follow_up();
        }
    }
}
