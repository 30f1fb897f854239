//! What the broker sends: acknowledgements of the session's requests, and server data, which
//! goes to the router and is acknowledged once its owner has it safe.

use rumqttc::{Incoming, SubscribeReasonCode};

use super::receive;
use super::session::Session;
use crate::router::Disposition;

impl Session<'_> {
    pub(super) fn on_incoming(&mut self, packet: Incoming) {
        match packet {
            Incoming::PubAck(ack) => {
                let completed = self.tracker.on_puback(ack.pkid);
                self.on_completed(completed);
            }
            Incoming::PubRec(ack) => {
                let completed = self.tracker.on_pubrec(ack.pkid);
                self.on_completed(completed);
            }
            Incoming::PubComp(ack) => {
                let completed = self.tracker.on_pubcomp(ack.pkid);
                self.on_completed(completed);
            }
            Incoming::SubAck(ack) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, SubscribeReasonCode::Failure))
                {
                    tracing::error!(
                        "the broker refused a subscription: server data for some interfaces will not arrive (check the broker ACL)"
                    );
                }
                self.tracker.on_suback(ack.pkid);
            }
            Incoming::Publish(publish) => self.on_server_data(publish),
            _ => {}
        }
    }

    fn on_server_data(&mut self, publish: rumqttc::Publish) {
        let context = self.context;
        let disposition = match receive::handle(
            &context.topics,
            &context.registry.snapshot(),
            &context.properties,
            &publish.topic,
            &publish.payload,
        ) {
            Ok(events) => context.router.route(events),
            Err(error) => {
                tracing::warn!(topic = %publish.topic, %error, "dropped a message from Astarte");
                // Redelivering it would not make it valid.
                Disposition::Done
            }
        };
        match disposition {
            Disposition::Done => self.acknowledge(&publish),
            Disposition::Pending(receipt) => {
                self.pending_acks.insert(receipt, publish);
            }
            Disposition::Refused => {}
        }
    }

    /// Acknowledges a message from Astarte (nothing for QoS 0). A full request channel only
    /// delays it: the broker delivers the message again after a reconnection.
    pub(super) fn acknowledge(&self, publish: &rumqttc::Publish) {
        if let Err(error) = self.client.try_ack(publish) {
            tracing::debug!(%error, pkid = publish.pkid, "couldn't acknowledge a message from Astarte now");
        }
    }
}
