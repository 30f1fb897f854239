//! The requests the store's writer thread takes.

use super::answer::Reply;
use super::{Loaded, PropertyRow, StoreError, StoredMessage, ledger};

/// What the writer thread is asked to do; each request that is answered carries a reply of
/// its own type.
pub(crate) enum Request {
    Append {
        message: StoredMessage,
        reply: Reply<u64>,
    },
    PutProperty {
        row: PropertyRow,
        reply: Option<Reply<()>>,
    },
    DeleteProperty {
        interface: String,
        path: String,
        reply: Option<Reply<()>>,
    },
    DropInterface {
        interface: String,
        reply: Reply<()>,
    },
    /// Acknowledged rows are waiting in the store's shared list ([`super::PendingAcks`]): a
    /// wake-up, sent when the list starts and when it reaches a batch.
    Acks,
    DeadLetter(u64),
    Load {
        from: u64,
        limit: usize,
        now_ms: i64,
        reply: Reply<Loaded>,
    },
    /// The command ledger's requests.
    Ledger(ledger::LedgerRequest),
    /// Commit what is pending and stop.
    Stop,
}

impl Request {
    /// Answers a request its transaction never applied.
    pub(super) fn fail(self, error: StoreError) {
        match self {
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::PutProperty {
                reply: Some(reply), ..
            }
            | Request::DeleteProperty {
                reply: Some(reply), ..
            }
            | Request::DropInterface { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Load { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Ledger(request) => request.fail(error),
            Request::PutProperty { reply: None, .. }
            | Request::DeleteProperty { reply: None, .. }
            | Request::Acks
            | Request::DeadLetter(_)
            | Request::Stop => {}
        }
    }
}
