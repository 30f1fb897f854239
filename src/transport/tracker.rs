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
    /// Written requests waiting for their acknowledgement, by packet id.
    inflight: HashMap<u16, Tag>,
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
            return self.submitted.pop_front().map(complete);
        }
        if self.inflight.contains_key(&pkid) {
            return None; // a retransmission after a resumed session
        }
        if let Some((parked, _)) = &self.collided {
            if *parked == pkid {
                if let Some((pkid, tag)) = self.collided.take() {
                    self.inflight.insert(pkid, tag);
                }
                return None;
            }
        }
        if let Some(tag) = self.submitted.pop_front() {
            self.inflight.insert(pkid, tag);
        }
        None
    }

    /// rumqttc wrote a subscription request.
    pub fn on_subscribe_written(&mut self, pkid: u16) {
        if let Some(tag) = self.submitted.pop_front() {
            self.inflight.insert(pkid, tag);
        }
    }

    /// rumqttc parked the next publish until `pkid` is acknowledged.
    pub fn on_await_ack(&mut self, pkid: u16) {
        if let Some(tag) = self.submitted.pop_front() {
            self.collided = Some((pkid, tag));
        }
    }

    /// The broker acknowledged `pkid` (PUBACK, PUBCOMP or SUBACK).
    pub fn on_acknowledged(&mut self, pkid: u16) -> Option<Completed> {
        self.inflight.remove(&pkid).map(complete)
    }

    /// Requests not finished yet.
    pub fn outstanding(&self) -> usize {
        self.submitted.len() + self.inflight.len() + usize::from(self.collided.is_some())
    }

    /// Handshake steps not finished yet.
    pub fn handshake_outstanding(&self) -> usize {
        let is_handshake = |tag: &&Tag| matches!(tag, Tag::Handshake);
        self.submitted.iter().filter(is_handshake).count()
            + self.inflight.values().filter(is_handshake).count()
            + self
                .collided
                .iter()
                .filter(|(_, tag)| matches!(tag, Tag::Handshake))
                .count()
    }

    /// The broker lost the session: everything unfinished is forgotten by rumqttc too.
    /// Returns the unfinished data messages so they can be sent again, oldest first.
    pub fn take_unfinished(&mut self) -> Vec<Message> {
        let mut messages: Vec<Message> = self
            .submitted
            .drain(..)
            .chain(self.inflight.drain().map(|(_, tag)| tag))
            .chain(self.collided.take().map(|(_, tag)| tag))
            .filter_map(|tag| match tag {
                Tag::Data(message) => Some(message),
                Tag::Handshake => None,
            })
            .collect();
        messages.sort_by_key(|message| message.seq);
        messages
    }
}

fn complete(tag: Tag) -> Completed {
    match tag {
        Tag::Handshake => Completed::Handshake,
        Tag::Data(message) => Completed::Data(message),
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
            expires_at: None,
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
        assert_eq!(seq(tracker.on_acknowledged(6)), Some(2));
        assert_eq!(tracker.outstanding(), 1);
        assert_eq!(seq(tracker.on_acknowledged(5)), Some(1));
        assert_eq!(
            tracker.on_acknowledged(5),
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
        assert_eq!(seq(tracker.on_acknowledged(4)), Some(2));
        assert_eq!(seq(tracker.on_acknowledged(3)), Some(1));
    }

    #[test]
    fn collided_publish_is_tracked_under_its_packet_id_once_released() {
        let mut tracker = Tracker::new();
        tracker.submitted(data(1, 1));
        tracker.on_publish_written(1);
        tracker.submitted(data(2, 1));
        tracker.on_await_ack(1);
        assert_eq!(seq(tracker.on_acknowledged(1)), Some(1));
        tracker.on_publish_written(1);
        assert_eq!(seq(tracker.on_acknowledged(1)), Some(2));
    }

    #[test]
    fn handshake_steps_are_counted_separately_from_data() {
        let mut tracker = Tracker::new();
        tracker.submitted(Tag::Handshake);
        tracker.submitted(data(1, 1));
        tracker.on_subscribe_written(1);
        assert_eq!(tracker.handshake_outstanding(), 1);
        assert_eq!(tracker.on_acknowledged(1), Some(Completed::Handshake));
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
}
