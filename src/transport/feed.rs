//! Moving work from the session to rumqttc: handshake steps first, then queued messages in
//! sequence order while fewer than [`MAX_OUTSTANDING`] requests are unacknowledged; refilling
//! the queue's window from disk; and telling the store which stored messages are delivered.

use rumqttc::QoS;

use super::handshake::Step;
use super::session::{MAX_OUTSTANDING, Session};
use super::tracker::{Completed, Tag};
use crate::clock::now_ms;
use crate::interface::Registry;
use crate::queue::{Message, REFILL_ROWS};
use crate::state::AgentState;

impl Session<'_> {
    /// Hands the next handshake steps or queued messages to rumqttc while there is room, and
    /// only to the connection this session set up.
    pub(super) fn feed(&mut self) {
        if self.generation == 0 || self.link.current() != self.generation {
            return;
        }
        if self.registry_changed && (self.ready || !self.handshake.is_empty()) {
            self.registry_changed = false;
            self.announce_interfaces();
        }
        let mut expired = Vec::new();
        // One look at the interfaces per call, not one per message.
        let registry = self.context.registry.snapshot();
        while self.tracker.outstanding() < MAX_OUTSTANDING {
            if let Some(step) = self.handshake.front() {
                if *step == Step::Barrier {
                    if self.tracker.handshake_outstanding() > 0 {
                        break;
                    }
                    self.handshake.pop_front();
                    if self.handshake.is_empty() {
                        tracing::info!("session handshake complete");
                        self.ready = true;
                        self.synced = true;
                        self.context.state.send_replace(AgentState::Connected);
                    }
                    continue;
                }
                let Some(step) = self.handshake.pop_front() else {
                    break;
                };
                if !self.submit_step(step) {
                    break;
                }
                continue;
            }
            if !self.ready {
                break;
            }
            let Some(message) = self.context.queue.pop(now_ms(), &mut expired) else {
                break;
            };
            if !still_declared(&registry, &message) {
                expired.push(message);
                continue;
            }
            let topic = self.context.topics.data(&message.interface, &message.path);
            match self
                .client
                .try_publish(topic, qos(message.qos), false, message.payload.clone())
            {
                Ok(()) => self.tracker.submitted(Tag::Data(message)),
                Err(error) => {
                    tracing::debug!(%error, "rumqttc's request channel is full; retrying later");
                    self.context.queue.requeue_front(vec![message]);
                    break;
                }
            }
        }
        self.delivered.extend(
            expired
                .iter()
                .filter(|message| message.is_stored())
                .map(|message| message.seq),
        );
    }

    pub(super) fn submit_step(&mut self, step: Step) -> bool {
        let result = match &step {
            Step::Subscribe(filters) => self.client.try_subscribe_many(
                filters
                    .iter()
                    // QoS 1 at most: rumqttc can't resume an inbound QoS 2 exchange
                    // across processes (see resume.rs).
                    .map(|filter| rumqttc::SubscribeFilter::new(filter.clone(), QoS::AtLeastOnce)),
            ),
            Step::Publish { topic, payload } => {
                self.client
                    .try_publish(topic.clone(), QoS::ExactlyOnce, false, payload.clone())
            }
            Step::Barrier => Ok(()),
        };
        match result {
            Ok(()) => {
                self.tracker.submitted(Tag::Handshake);
                true
            }
            Err(error) => {
                tracing::debug!(%error, "rumqttc's request channel is full; retrying later");
                self.handshake.push_front(step);
                false
            }
        }
    }

    /// The interfaces changed while connected: subscribe to new server-owned ones, then
    /// publish the new introspection, ahead of any further data.
    fn announce_interfaces(&mut self) {
        let registry = self.context.registry.snapshot();
        let new: Vec<String> = registry
            .server_owned()
            .filter(|interface| !self.subscribed.contains(&interface.name))
            .map(|interface| interface.name.clone())
            .collect();
        if !new.is_empty() {
            let filters = new
                .iter()
                .map(|name| self.context.topics.interface_filter(name))
                .collect();
            self.handshake.push_back(Step::Subscribe(filters));
            self.subscribed.extend(new);
        }
        self.handshake.push_back(Step::Publish {
            topic: self.context.topics.base().to_owned(),
            payload: registry.introspection().into_bytes(),
        });
        tracing::info!("publishing the new introspection");
    }

    /// Asks the store for the next rows of a backlog that waits on disk; the queue wakes the
    /// session when they arrive. Never waits here.
    pub(super) fn refill(&self) {
        let Some(from) = self.context.queue.refill_needed() else {
            return;
        };
        let store = self.context.store.clone();
        let queue = self.context.queue.clone();
        tokio::spawn(async move {
            let loaded = store.load(from, REFILL_ROWS).await;
            if let Err(error) = &loaded {
                tracing::warn!(error = %crate::error_chain::error_chain(error), "couldn't read the stored queue; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            queue.refill(loaded.map_err(|_| ()));
        });
    }

    /// Tells the store, in one request, which stored rows are done with.
    pub(super) fn flush_delivered(&mut self) {
        self.context.store.ack(std::mem::take(&mut self.delivered));
    }

    /// A request is finished from the broker's point of view.
    pub(super) fn on_completed(&mut self, completed: Option<Completed>) {
        if let Some(Completed::Data(message)) = completed {
            self.suspect.cleared(message.seq);
            if message.is_stored() {
                self.delivered.push(message.seq);
            }
        }
    }
}

/// Data of an interface that was removed, or replaced by another major version, would make
/// Astarte close the connection: it is dropped instead.
fn still_declared(registry: &Registry, message: &Message) -> bool {
    let declared = registry
        .get(&message.interface)
        .is_some_and(|interface| interface.version_major == message.major);
    if !declared {
        tracing::warn!(interface = %message.interface, major = message.major, path = %message.path,
            "dropping a queued message: its interface version is no longer declared");
    }
    declared
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
