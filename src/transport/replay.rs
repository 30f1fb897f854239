//! Keeps rumqttc's replay after a lost connection in the order the messages were first sent.
//!
//! When a connection drops, rumqttc queues for the next one, in this order: the requests of an
//! earlier replay it had not written yet, the publishes still waiting for an acknowledgement,
//! releases, then its request channel. If a connection dies while it is replaying an earlier
//! one's messages, those not replayed yet end up ahead of older ones it had already written
//! again, and a resumed session delivers newer stored data first (seen when the broker
//! closes the connection on each replay, as Astarte does on a message it refuses).
//!
//! The driver notes when each packet id was first written and, after every loss, puts the
//! replay back in that order: releases first (they only end exchanges the broker already
//! holds, and after a crash they must go before anything else), then the publishes written
//! before, oldest first, then everything else as rumqttc queued it.

use std::collections::{HashMap, VecDeque};

use rumqttc::{Event, Outgoing, Packet, Request};

/// When each packet id in flight was first written, as a rising count.
#[derive(Debug, Default)]
pub struct WriteOrder {
    written: u64,
    first_written: HashMap<u16, u64>,
}

impl WriteOrder {
    /// Takes note of what `event` says about publishes in flight.
    pub fn note(&mut self, event: &Event) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) if *pkid != 0 => {
                let written = &mut self.written;
                self.first_written.entry(*pkid).or_insert_with(|| {
                    *written += 1;
                    *written
                });
            }
            // The publish leaves rumqttc's replay (a QoS 2 one for its release).
            Event::Incoming(Packet::PubAck(ack)) => {
                self.first_written.remove(&ack.pkid);
            }
            Event::Incoming(Packet::PubRec(rec)) => {
                self.first_written.remove(&rec.pkid);
            }
            _ => {}
        }
    }

    /// The broker has no session: rumqttc dropped its replay, and packet ids start over.
    pub fn forget(&mut self) {
        self.first_written.clear();
    }

    /// Puts rumqttc's replay back in order. `unreported` are events rumqttc produced before
    /// the loss and reports only later (a publish written just as the connection broke).
    pub fn restore<'a>(
        &mut self,
        pending: &mut VecDeque<Request>,
        unreported: impl IntoIterator<Item = &'a Event>,
    ) {
        for event in unreported {
            self.note(event);
        }
        // A stable sort: requests of the same rank keep rumqttc's order.
        pending
            .make_contiguous()
            .sort_by_key(|request| self.rank(request));
    }

    fn rank(&self, request: &Request) -> (u8, u64) {
        match request {
            Request::PubRel(_) => (0, 0),
            Request::Publish(publish) => match self.first_written.get(&publish.pkid) {
                Some(written) => (1, *written),
                None => (2, 0),
            },
            _ => (2, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::{PubAck, PubRec, PubRel, Publish, QoS};

    use super::*;

    fn publish(pkid: u16, tag: u8) -> Request {
        let mut publish = Publish::new("t", QoS::AtLeastOnce, vec![tag]);
        publish.pkid = pkid;
        Request::Publish(publish)
    }

    fn tags(pending: &VecDeque<Request>) -> Vec<String> {
        pending
            .iter()
            .map(|request| match request {
                Request::Publish(publish) => format!("p{}", publish.payload[0]),
                Request::PubRel(rel) => format!("rel{}", rel.pkid),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn written(order: &mut WriteOrder, pkids: impl IntoIterator<Item = u16>) {
        for pkid in pkids {
            order.note(&Event::Outgoing(Outgoing::Publish(pkid)));
        }
    }

    #[test]
    fn leftovers_of_an_interrupted_replay_go_back_behind_older_publishes() {
        let mut order = WriteOrder::default();
        written(&mut order, [7, 8, 9]);
        // 7 was written again before the loss (a retransmission keeps its first place);
        // rumqttc queued the leftovers 8 and 9 first, then 7 from its in-flight table, then a
        // request from its channel never written (packet id 0).
        written(&mut order, [7]);
        let mut pending =
            VecDeque::from([publish(8, 2), publish(9, 3), publish(7, 1), publish(0, 4)]);

        order.restore(&mut pending, []);

        assert_eq!(tags(&pending), ["p1", "p2", "p3", "p4"]);
    }

    #[test]
    fn releases_go_first_and_a_publish_reported_late_counts_as_written() {
        let mut order = WriteOrder::default();
        written(&mut order, [1, 2]);
        let late = [Event::Outgoing(Outgoing::Publish(3))];
        let mut pending = VecDeque::from([
            publish(0, 5),
            publish(3, 3),
            publish(2, 2),
            Request::PubRel(PubRel::new(1)),
        ]);

        order.restore(&mut pending, &late);

        assert_eq!(tags(&pending), ["rel1", "p2", "p3", "p5"]);
    }

    #[test]
    fn a_qos_0_write_gives_no_place_to_requests_never_written() {
        let mut order = WriteOrder::default();
        // A QoS 0 publish is written with packet id 0, like every request not written yet.
        written(&mut order, [0, 4]);
        let mut pending = VecDeque::from([publish(0, 2), publish(4, 1)]);

        order.restore(&mut pending, []);

        assert_eq!(tags(&pending), ["p1", "p2"]);
    }

    #[test]
    fn an_acknowledged_packet_id_written_again_is_a_new_message() {
        let mut order = WriteOrder::default();
        written(&mut order, [1, 2]);
        order.note(&Event::Incoming(Packet::PubAck(PubAck::new(1))));
        order.note(&Event::Incoming(Packet::PubRec(PubRec::new(2))));
        written(&mut order, [3, 1, 2]);
        let mut pending = VecDeque::from([publish(2, 3), publish(1, 2), publish(3, 1)]);

        order.restore(&mut pending, []);

        assert_eq!(tags(&pending), ["p1", "p2", "p3"]);
    }

    #[test]
    fn a_lost_broker_session_forgets_what_was_written() {
        let mut order = WriteOrder::default();
        written(&mut order, [5, 6]);
        order.forget();
        written(&mut order, [6]);
        let mut pending = VecDeque::from([publish(5, 2), publish(6, 1)]);

        order.restore(&mut pending, []);

        assert_eq!(tags(&pending), ["p1", "p2"]);
    }
}
