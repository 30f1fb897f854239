//! Correlates what the session handed to rumqttc with the broker's acknowledgements.
//!
//! rumqttc reports `Outgoing::Publish(pkid)` when it writes a request, in the order requests
//! were made, and `Incoming::PubAck/PubComp/SubAck(pkid)` when the broker acknowledges one.
//! Stock rumqttc has no per-request completion notice, so the session tracks requests here:
//! a message counts as delivered only when its acknowledgement arrives (QoS 1/2) or when it
//! was written (QoS 0). Whatever is unacknowledged when a session is lost can be requeued.

use std::collections::{HashMap, VecDeque};

use crate::queue::Message;

/// What a request to rumqttc was for.
#[derive(Debug, Clone, PartialEq)]
pub enum Tag {
    /// A handshake step (subscription, introspection, emptyCache, purge list, property resend).
    Handshake,
    /// Application data from the queue.
    Data(Message),
    /// A QoS 2 data message the broker has received (PUBREC): delivered, its exchange ends
    /// with PUBCOMP.
    Released,
}

/// A request that is finished from the broker's point of view.
#[derive(Debug, PartialEq)]
pub enum Completed {
    Handshake,
    Data(Message),
}

#[derive(Debug, Default)]
pub struct Tracker {
    /// Requests given to rumqttc, not yet written, in order.
    submitted: VecDeque<Tag>,
    /// Written publishes waiting for PUBACK (QoS 1) or PUBREC (QoS 2), by packet id.
    awaiting_ack: HashMap<u16, Tag>,
    /// QoS 2 publishes the broker has received (PUBREC), waiting for PUBCOMP. rumqttc frees
    /// their packet id at PUBREC, so a new publish may already carry the same id.
    awaiting_complete: HashMap<u16, Tag>,
    /// Written subscriptions waiting for SUBACK. rumqttc never resends them after a reconnect.
    subscriptions: HashMap<u16, Tag>,
    /// A publish rumqttc parked because its packet id was still in use (`AwaitAck`).
    collided: Option<(u16, Tag)>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Records a request just given to rumqttc.
    pub fn submitted(&mut self, tag: Tag) {
        self.submitted.push_back(tag);
    }

    /// rumqttc wrote a publish. Packet id 0 is QoS 0: done once written.
    pub fn on_publish_written(&mut self, pkid: u16) -> Option<Completed> {
        if pkid == 0 {
            return self.submitted.pop_front().and_then(complete);
        }
        if self.awaiting_ack.contains_key(&pkid) {
            return None; // a retransmission after a resumed session
        }
        if let Some((parked, _)) = &self.collided
            && *parked == pkid
        {
            if let Some((pkid, tag)) = self.collided.take() {
                self.awaiting_ack.insert(pkid, tag);
            }
            return None;
        }
        if let Some(tag) = self.submitted.pop_front() {
            self.awaiting_ack.insert(pkid, tag);
        }
        None
    }

    /// rumqttc wrote a subscription request.
    pub fn on_subscribe_written(&mut self, pkid: u16) {
        if let Some(tag) = self.submitted.pop_front() {
            self.subscriptions.insert(pkid, tag);
        }
    }

    /// rumqttc parked the next publish until `pkid` is acknowledged.
    pub fn on_await_ack(&mut self, pkid: u16) {
        if let Some(tag) = self.submitted.pop_front() {
            self.collided = Some((pkid, tag));
        }
    }

    /// PUBACK: a QoS 1 publish is delivered.
    pub fn on_puback(&mut self, pkid: u16) -> Option<Completed> {
        self.awaiting_ack.remove(&pkid).and_then(complete)
    }

    /// PUBREC: the broker owns a QoS 2 publish, the exchange ends with PUBCOMP. Data is
    /// delivered from now on (the broker will not lose it and must not get it again: after a
    /// crash, a stored message is never sent again once its row is gone); a handshake step
    /// completes with PUBCOMP.
    pub fn on_pubrec(&mut self, pkid: u16) -> Option<Completed> {
        match self.awaiting_ack.remove(&pkid)? {
            Tag::Data(message) => {
                self.awaiting_complete.insert(pkid, Tag::Released);
                Some(Completed::Data(message))
            }
            tag => {
                self.awaiting_complete.insert(pkid, tag);
                None
            }
        }
    }

    /// PUBCOMP: a QoS 2 exchange is finished.
    pub fn on_pubcomp(&mut self, pkid: u16) -> Option<Completed> {
        self.awaiting_complete.remove(&pkid).and_then(complete)
    }

    /// SUBACK: a subscription is in place.
    pub fn on_suback(&mut self, pkid: u16) -> Option<Completed> {
        self.subscriptions.remove(&pkid).and_then(complete)
    }

    /// The connection dropped: written subscriptions will never be acknowledged (rumqttc
    /// does not resend them; the next full handshake subscribes again).
    pub fn on_link_lost(&mut self) {
        self.subscriptions.clear();
    }

    /// Requests not finished yet.
    pub fn outstanding(&self) -> usize {
        self.submitted.len()
            + self.awaiting_ack.len()
            + self.awaiting_complete.len()
            + self.subscriptions.len()
            + usize::from(self.collided.is_some())
    }

    /// The oldest data message written to the broker and not acknowledged yet.
    pub fn oldest_written_data(&self) -> Option<u64> {
        self.awaiting_ack
            .values()
            .chain(self.awaiting_complete.values())
            .filter_map(|tag| match tag {
                Tag::Data(message) => Some(message.seq),
                Tag::Handshake | Tag::Released => None,
            })
            .min()
    }

    /// Handshake steps not finished yet.
    pub fn handshake_outstanding(&self) -> usize {
        let is_handshake = |tag: &&Tag| matches!(tag, Tag::Handshake);
        self.submitted.iter().filter(is_handshake).count()
            + self.awaiting_ack.values().filter(is_handshake).count()
            + self.awaiting_complete.values().filter(is_handshake).count()
            + self.subscriptions.values().filter(is_handshake).count()
            + self
                .collided
                .iter()
                .filter(|(_, tag)| matches!(tag, Tag::Handshake))
                .count()
    }

    /// The broker lost the session: everything unfinished is forgotten by rumqttc too.
    /// Returns the data messages the broker may not have, oldest first. QoS 2 messages past
    /// PUBREC are the broker's already and are not returned (no duplicates).
    pub fn take_unfinished(&mut self) -> Vec<Message> {
        self.awaiting_complete.clear();
        self.subscriptions.clear();
        let mut messages: Vec<Message> = self
            .submitted
            .drain(..)
            .chain(self.awaiting_ack.drain().map(|(_, tag)| tag))
            .chain(self.collided.take().map(|(_, tag)| tag))
            .filter_map(|tag| match tag {
                Tag::Data(message) => Some(message),
                Tag::Handshake | Tag::Released => None,
            })
            .collect();
        messages.sort_by_key(|message| message.seq);
        messages
    }
}

fn complete(tag: Tag) -> Option<Completed> {
    match tag {
        Tag::Handshake => Some(Completed::Handshake),
        Tag::Data(message) => Some(Completed::Data(message)),
        Tag::Released => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::Retention;

    fn data(seq: u64, qos: u8) -> Tag {
        Tag::Data(Message {
            seq,
            interface: "i".into(),
            path: "/p".into(),
            payload: vec![],
            qos,
            retention: Retention::Volatile,
            major: 0,
            expires_at_ms: None,
            is_property: false,
        })
    }

    fn seq(completed: Option<Completed>) -> Option<u64> {
        match completed {
            Some(Completed::Data(message)) => Some(message.seq),
            _ => None,
        }
    }

    #[test]
    fn qos0_is_complete_once_written() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(7, 0));
        assert_eq!(seq(tracker.on_publish_written(0)), Some(7));
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn qos1_is_complete_only_when_acknowledged() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 1));
        tracker.submitted(data(2, 1));
        assert_eq!(tracker.on_publish_written(5), None);
        assert_eq!(tracker.on_publish_written(6), None);
        assert_eq!(seq(tracker.on_puback(6)), Some(2));
        assert_eq!(tracker.outstanding(), 1);
        assert_eq!(seq(tracker.on_puback(5)), Some(1));
        assert_eq!(
            tracker.on_puback(5),
            None,
            "a duplicate ack completes nothing"
        );
    }

    #[test]
    fn retransmission_after_resume_does_not_consume_a_new_request() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 1));
        tracker.on_publish_written(3);
        tracker.submitted(data(2, 1));
        assert_eq!(
            tracker.on_publish_written(3),
            None,
            "retransmission of pkid 3"
        );
        tracker.on_publish_written(4);
        assert_eq!(seq(tracker.on_puback(4)), Some(2));
        assert_eq!(seq(tracker.on_puback(3)), Some(1));
    }

    #[test]
    fn collided_publish_is_tracked_under_its_packet_id_once_released() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 1));
        tracker.on_publish_written(1);
        tracker.submitted(data(2, 1));
        tracker.on_await_ack(1);
        assert_eq!(seq(tracker.on_puback(1)), Some(1));
        tracker.on_publish_written(1);
        assert_eq!(seq(tracker.on_puback(1)), Some(2));
    }

    #[test]
    fn handshake_steps_are_counted_separately_from_data() {
        let mut tracker = Tracker::new();
        tracker.submitted(Tag::Handshake);
        tracker.submitted(data(1, 1));
        tracker.on_subscribe_written(1);
        assert_eq!(tracker.handshake_outstanding(), 1);
        assert_eq!(tracker.on_suback(1), Some(Completed::Handshake));
        assert_eq!(tracker.handshake_outstanding(), 0);
        assert_eq!(tracker.outstanding(), 1);
    }

    #[test]
    fn lost_session_returns_unfinished_data_oldest_first() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 1));
        tracker.submitted(Tag::Handshake);
        tracker.submitted(data(2, 2));
        tracker.on_publish_written(9);
        let unfinished: Vec<u64> = tracker
            .take_unfinished()
            .into_iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(unfinished, [1, 2]);
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn qos2_packet_id_reused_after_pubrec_is_a_new_publish_not_a_retransmission() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 2));
        tracker.on_publish_written(7);
        // rumqttc frees id 7 here; the broker owns message 1: it is delivered.
        assert_eq!(seq(tracker.on_pubrec(7)), Some(1));
        assert_eq!(tracker.outstanding(), 1, "its exchange is not over");
        tracker.submitted(data(2, 1));
        tracker.on_publish_written(7);
        assert_eq!(seq(tracker.on_puback(7)), Some(2));
        assert_eq!(
            tracker.on_pubcomp(7),
            None,
            "the end of message 1's exchange"
        );
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn a_handshake_step_at_qos2_completes_at_pubcomp_not_pubrec() {
        let mut tracker = Tracker::new();
        tracker.submitted(Tag::Handshake);
        tracker.on_publish_written(3);
        assert_eq!(tracker.on_pubrec(3), None);
        assert_eq!(tracker.handshake_outstanding(), 1);
        assert_eq!(tracker.on_pubcomp(3), Some(Completed::Handshake));
        assert_eq!(tracker.handshake_outstanding(), 0);
    }

    #[test]
    fn a_subscription_written_before_the_link_dropped_does_not_block_the_handshake() {
        let mut tracker = Tracker::new();
        tracker.submitted(Tag::Handshake);
        tracker.on_subscribe_written(1);
        tracker.on_link_lost();
        assert_eq!(tracker.handshake_outstanding(), 0);
    }

    #[test]
    fn qos2_data_the_broker_received_is_not_sent_again_after_a_lost_session() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 2));
        tracker.submitted(data(2, 2));
        tracker.on_publish_written(1);
        tracker.on_publish_written(2);
        tracker.on_pubrec(1);
        let unfinished: Vec<u64> = tracker
            .take_unfinished()
            .into_iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(unfinished, [2]);
    }
}
