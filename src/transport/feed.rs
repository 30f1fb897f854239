//! Moving work from the session to rumqttc, as the phase allows: handshake steps while
//! handshaking; announcements of changed interfaces, then queued messages in sequence order
//! while ready, as long as fewer than [`MAX_OUTSTANDING`] requests are unacknowledged; and
//! telling the store which stored messages are delivered.

use std::collections::{BTreeSet, VecDeque};

use rumqttc::QoS;

use super::handshake::Step;
use super::phase::Phase;
use super::session::{MAX_OUTSTANDING, Session, SessionContext};
use super::tracker::{Completed, Tag};
use crate::clock::now_ms;
use crate::interface::Registry;
use crate::queue::Message;
use crate::state::AgentState;

impl Session<'_> {
    /// Hands the next steps or queued messages to rumqttc while there is room, and only to
    /// the connection this phase belongs to.
    pub(super) fn feed(&mut self) {
        let Some(generation) = self.phase.generation() else {
            return;
        };
        if self.link.current() != generation {
            return; // rumqttc has moved on: the session hears of it next
        }
        let phase = std::mem::replace(&mut self.phase, Phase::start(false));
        self.phase = match phase {
            Phase::Handshaking {
                generation,
                mut steps,
            } => {
                let done = self.feed_steps(&mut steps);
                self.phase = Phase::Handshaking { generation, steps }.handshake_done();
                if done {
                    tracing::info!("session handshake complete");
                    self.context.state.send_replace(AgentState::Connected);
                    self.record_session();
                    // Data may flow at once.
                    self.feed();
                }
                return;
            }
            Phase::Ready {
                generation,
                mut announce,
            } => {
                if self.feed_steps(&mut announce) {
                    self.feed_data();
                }
                Phase::Ready {
                    generation,
                    announce,
                }
            }
            down => down,
        };
    }

    /// Hands over `steps` in order, waiting at each barrier until every earlier request is
    /// acknowledged. True when none is left.
    fn feed_steps(&mut self, steps: &mut VecDeque<Step>) -> bool {
        while self.tracker.outstanding() < MAX_OUTSTANDING {
            let Some(step) = steps.pop_front() else {
                return true;
            };
            if step == Step::Barrier {
                if self.tracker.handshake_outstanding() > 0 {
                    steps.push_front(step);
                    return false;
                }
                continue;
            }
            if let Err(step) = self.submit_step(step) {
                steps.push_front(step);
                return false;
            }
        }
        steps.is_empty()
    }

    /// Queued messages, in order, while there is room.
    fn feed_data(&mut self) {
        let mut expired = Vec::new();
        // One look at the interfaces per call, not one per message.
        let registry = self.context.registry.snapshot();
        while self.tracker.outstanding() < MAX_OUTSTANDING {
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

    /// Hands one step to rumqttc; gives it back when rumqttc's channel is full.
    fn submit_step(&mut self, step: Step) -> Result<(), Step> {
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
                Ok(())
            }
            Err(error) => {
                tracing::debug!(%error, "rumqttc's request channel is full; retrying later");
                Err(step)
            }
        }
    }

    /// The broker keeps a session for the device from now on: a later start (even after a
    /// crash) resumes it. Written once, without waiting.
    fn record_session(&mut self) {
        if let Some((record, identity)) = self.record.take() {
            tokio::spawn(async move { record.session_exists(&identity).await });
        }
    }

    /// The interfaces changed: the phase announces them when it can.
    pub(super) fn on_interfaces_changed(&mut self) {
        let (context, subscribed) = (self.context, &mut self.subscribed);
        self.phase
            .interfaces_changed(|| announce_steps(context, subscribed));
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

/// The steps announcing the interfaces in force to a session that knows older ones:
/// subscriptions to the server-owned interfaces not subscribed yet (recorded in
/// `subscribed`), then the new introspection.
pub(super) fn announce_steps(
    context: &SessionContext,
    subscribed: &mut BTreeSet<String>,
) -> VecDeque<Step> {
    let registry = context.registry.snapshot();
    let new: Vec<String> = registry
        .server_owned()
        .filter(|interface| !subscribed.contains(&interface.name))
        .map(|interface| interface.name.clone())
        .collect();
    let mut steps = VecDeque::new();
    if !new.is_empty() {
        let filters = new
            .iter()
            .map(|name| context.topics.interface_filter(name))
            .collect();
        steps.push_back(Step::Subscribe(filters));
        subscribed.extend(new);
    }
    steps.push_back(Step::Publish {
        topic: context.topics.base().to_owned(),
        payload: registry.introspection().into_bytes(),
    });
    tracing::info!("publishing the new introspection");
    steps
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
