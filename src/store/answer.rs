//! Answering the writer's callers. Each request carries a reply channel of its own type; the
//! code that computes a request's value inside the transaction pairs it with that reply (a
//! [`Pending`] answer), and it is sent only once the transaction committed, or replaced by the
//! transaction's error. No value is ever matched to its reply after the fact.

use tokio::sync::oneshot;

use super::StoreError;

/// Where a request's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An answer decided inside a transaction, sent when its fate is known.
pub(super) trait Pending: Send {
    /// The transaction committed.
    fn committed(self: Box<Self>);
    /// The transaction failed: nothing of it is on disk.
    fn failed(self: Box<Self>, error: StoreError);
}

/// A value for its reply.
struct Valued<T> {
    reply: Reply<T>,
    value: T,
}

impl<T: Send> Pending for Valued<T> {
    fn committed(self: Box<Self>) {
        let _ = self.reply.send(Ok(self.value));
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// A request refused without touching the database (the transaction goes on).
struct Refused<T> {
    reply: Reply<T>,
    error: StoreError,
}

impl<T: Send> Pending for Refused<T> {
    fn committed(self: Box<Self>) {
        let _ = self.reply.send(Err(self.error));
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Nobody waits for this request.
struct Unanswered;

impl Pending for Unanswered {
    fn committed(self: Box<Self>) {}
    fn failed(self: Box<Self>, _: StoreError) {}
}

pub(super) fn value<T: Send + 'static>(reply: Reply<T>, value: T) -> Box<dyn Pending> {
    Box::new(Valued { reply, value })
}

pub(super) fn refused<T: Send + 'static>(reply: Reply<T>, error: StoreError) -> Box<dyn Pending> {
    Box::new(Refused { reply, error })
}

/// `()` for `reply`, if someone waits.
pub(super) fn done(reply: Option<Reply<()>>) -> Box<dyn Pending> {
    match reply {
        Some(reply) => value(reply, ()),
        None => Box::new(Unanswered),
    }
}

/// A request whose statement failed: the transaction is rolled back, and this request's
/// caller (if any) gets the error with the others'.
pub(super) struct Aborted {
    pub error: rusqlite::Error,
    pub fail: Option<Box<dyn FnOnce(StoreError) + Send>>,
}

impl Aborted {
    fn reply<T: Send + 'static>(reply: Reply<T>, error: rusqlite::Error) -> Aborted {
        Aborted {
            error,
            fail: Some(Box::new(move |failure| {
                let _ = reply.send(Err(failure));
            })),
        }
    }
}

/// The answer to `reply` from a statement's result.
pub(super) fn answered<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, rusqlite::Error>,
) -> Result<Box<dyn Pending>, Aborted> {
    match result {
        Ok(result) => Ok(value(reply, result)),
        Err(error) => Err(Aborted::reply(reply, error)),
    }
}

/// `()` for `reply` (if any) from a statement's result.
pub(super) fn answered_done(
    reply: Option<Reply<()>>,
    result: Result<(), rusqlite::Error>,
) -> Result<Box<dyn Pending>, Aborted> {
    match (reply, result) {
        (Some(reply), result) => answered(reply, result),
        (None, Ok(())) => Ok(Box::new(Unanswered)),
        (None, Err(error)) => Err(Aborted { error, fail: None }),
    }
}
