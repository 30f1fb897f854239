//! The typed inbound router, between the transport and the consumers of server data: hands
//! each message from Astarte to the feature that owns its interface. Remote commands get
//! theirs through a [`Route`] and confirm them; everything else goes to the D-Bus signals.
//! Consumers depend on this module, never on the transport that feeds it.
//!
//! Acknowledgements are manual: a message is acknowledged to the broker only once its owner
//! has it safe. Signals and property writes are handled on the spot (the property is in
//! memory, its disk write queued), so their acknowledgement follows at once; a command is
//! acknowledged when the commands feature confirms it is in its ledger. If the agent dies
//! before that, the broker delivers the command again (QoS 1) and the ledger's dedupe by
//! command id makes the redelivery harmless.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::data::AstarteValue;

/// Something the server told the device, for the D-Bus signals.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// An individual datastream value or a property set.
    Value {
        interface: String,
        path: String,
        value: AstarteValue,
        timestamp_ms: i64,
    },
    /// An object of an object-aggregated datastream.
    Object {
        interface: String,
        path: String,
        values: Vec<(String, AstarteValue)>,
        timestamp_ms: i64,
    },
    /// A server-owned property was unset (explicitly, or by the consumer purge list).
    Unset { interface: String, path: String },
}

/// Server data for the D-Bus signals. The session never waits for a slow consumer: when the
/// channel is full, events are dropped and counted (logged once per episode).
pub struct ServerEvents {
    pub sender: mpsc::Sender<ServerEvent>,
    pub dropped: AtomicU64,
    dropping: AtomicBool,
}

impl ServerEvents {
    pub fn new(sender: mpsc::Sender<ServerEvent>) -> ServerEvents {
        ServerEvents {
            sender,
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
        }
    }

    fn deliver(&self, event: ServerEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {
                if self.dropping.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        dropped_total = self.dropped.load(Ordering::Relaxed),
                        "D-Bus signals flow again"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        dropped_total = total,
                        "D-Bus signals are not being delivered fast enough: dropping server data signals (property values stay readable with GetProperty)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// A message for a feature, with the receipt it confirms once the message is safe.
#[derive(Debug)]
pub struct Routed {
    pub event: ServerEvent,
    pub receipt: Receipt,
}

/// Confirms one routed message; the broker's acknowledgement follows. Dropping it without
/// confirming leaves the message unacknowledged: the broker delivers it again after the next
/// reconnection.
#[derive(Debug)]
pub struct Receipt {
    id: u64,
    confirmations: mpsc::UnboundedSender<u64>,
}

impl Receipt {
    pub fn confirm(self) {
        let _ = self.confirmations.send(self.id);
    }
}

/// The feature that owns some interfaces: a bounded channel, never waited on.
#[derive(Debug, Clone)]
pub struct Route {
    pub interfaces: Vec<String>,
    pub sender: mpsc::Sender<Routed>,
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Handled: acknowledge it now.
    Done,
    /// With its owner: acknowledge it when receipt `id` is confirmed.
    Pending(u64),
    /// Its owner can't take it now: leave it unacknowledged.
    Refused,
}

/// Routes server data; owned by the session task's context.
pub struct Router {
    signals: ServerEvents,
    routes: HashMap<String, mpsc::Sender<Routed>>,
    confirmations: mpsc::UnboundedSender<u64>,
    next_receipt: AtomicU64,
}

impl Router {
    /// Returns the router and the confirmations the session turns into acknowledgements.
    pub fn new(
        signals: ServerEvents,
        routes: Vec<Route>,
    ) -> (Router, mpsc::UnboundedReceiver<u64>) {
        let (confirmations, receiver) = mpsc::unbounded_channel();
        let routes = routes
            .into_iter()
            .flat_map(|route| {
                let sender = route.sender;
                route
                    .interfaces
                    .into_iter()
                    .map(move |name| (name, sender.clone()))
            })
            .collect();
        let router = Router {
            signals,
            routes,
            confirmations,
            next_receipt: AtomicU64::new(1),
        };
        (router, receiver)
    }

    pub fn signals(&self) -> &ServerEvents {
        &self.signals
    }

    /// Hands the events of one message to their owners.
    pub fn route(&self, events: Vec<ServerEvent>) -> Disposition {
        let mut disposition = Disposition::Done;
        for event in events {
            let owner = match &event {
                ServerEvent::Value { interface, .. }
                | ServerEvent::Object { interface, .. }
                | ServerEvent::Unset { interface, .. } => self.routes.get(interface),
            };
            let Some(owner) = owner else {
                self.signals.deliver(event);
                continue;
            };
            let id = self.next_receipt.fetch_add(1, Ordering::Relaxed);
            let receipt = Receipt {
                id,
                confirmations: self.confirmations.clone(),
            };
            disposition = match owner.try_send(Routed { event, receipt }) {
                Ok(()) => Disposition::Pending(id),
                Err(error) => {
                    tracing::warn!(%error, "a feature can't take a message from Astarte now; it stays unacknowledged and comes again after a reconnection");
                    Disposition::Refused
                }
            };
        }
        disposition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::AstarteValue;

    fn value(interface: &str) -> ServerEvent {
        ServerEvent::Value {
            interface: interface.into(),
            path: "/p".into(),
            value: AstarteValue::Integer(1),
            timestamp_ms: 0,
        }
    }

    #[tokio::test]
    async fn owned_interfaces_go_to_their_feature_and_are_acknowledged_when_confirmed() {
        let (signals_tx, mut signals) = mpsc::channel(4);
        let (commands_tx, mut commands) = mpsc::channel(1);
        let route = Route {
            interfaces: vec!["org.example.Commands".into()],
            sender: commands_tx,
        };
        let (router, mut confirmations) = Router::new(ServerEvents::new(signals_tx), vec![route]);

        assert_eq!(
            router.route(vec![value("org.example.Other")]),
            Disposition::Done
        );
        assert_eq!(signals.try_recv().unwrap(), value("org.example.Other"));

        let Disposition::Pending(id) = router.route(vec![value("org.example.Commands")]) else {
            panic!("routed to the commands feature");
        };
        assert!(signals.try_recv().is_err(), "not a signal");
        assert_eq!(
            router.route(vec![value("org.example.Commands")]),
            Disposition::Refused,
            "a full feature channel leaves the message unacknowledged"
        );
        let routed = commands.try_recv().unwrap();
        assert_eq!(routed.event, value("org.example.Commands"));
        assert!(confirmations.try_recv().is_err(), "not confirmed yet");
        routed.receipt.confirm();
        assert_eq!(confirmations.try_recv().unwrap(), id);
    }
}
