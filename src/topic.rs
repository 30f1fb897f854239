//! MQTT v1 topics: `<realm>/<device_id>` is the base of everything a device touches.

/// Where an incoming publish belongs.
#[derive(Debug, PartialEq, Eq)]
pub enum IncomingTopic<'a> {
    /// `B/control/consumer/properties`: the server-owned property purge list.
    ConsumerProperties,
    /// `B/<interface><path>`: server-owned data.
    Data { interface: &'a str, path: &'a str },
}

/// The base topic and the fixed topics derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(realm: &str, device_id: &str) -> Topics {
        Topics {
            base: format!("{realm}/{device_id}"),
        }
    }

    /// `realm/device_id`: also the MQTT client ID and the certificate CN.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn empty_cache(&self) -> String {
        format!("{}/control/emptyCache", self.base)
    }

    pub fn producer_properties(&self) -> String {
        format!("{}/control/producer/properties", self.base)
    }

    pub fn consumer_properties(&self) -> String {
        format!("{}/control/consumer/properties", self.base)
    }

    /// Subscription filter for one server-owned interface (never `B/#`: it would echo our own data).
    pub fn interface_filter(&self, interface: &str) -> String {
        format!("{}/{interface}/#", self.base)
    }

    /// `B/<interface><path>`; an object on a depth-1 endpoint uses path `/`.
    pub fn data(&self, interface: &str, path: &str) -> String {
        format!("{}/{interface}{path}", self.base)
    }

    /// Splits an incoming topic; `None` for anything outside this device or unparsable.
    pub fn parse<'a>(&self, topic: &'a str) -> Option<IncomingTopic<'a>> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        if rest == "control/consumer/properties" {
            return Some(IncomingTopic::ConsumerProperties);
        }
        let slash = rest.find('/')?;
        let (interface, path) = rest.split_at(slash);
        if interface.is_empty() || interface == "control" {
            return None;
        }
        Some(IncomingTopic::Data { interface, path })
    }
}

/// Bytes of an MQTT 3.1.1 PUBLISH after the fixed header: topic length prefix, topic, packet id.
/// Astarte's broker caps this "remaining length" at 65,535 bytes.
pub fn remaining_length(topic: &str, qos: u8, payload_len: usize) -> usize {
    2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload_len
}

/// Astarte's broker plugin sets `max_message_size: 65535` on every device session.
pub const MAX_REMAINING_LENGTH: usize = 65_535;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_topics_join_base_interface_and_path() {
        let topics = Topics::new("test", "2TBn-jNESuuHamE2Zo1anA");
        assert_eq!(
            topics.data("org.example.Sensors", "/room1/temperature"),
            "test/2TBn-jNESuuHamE2Zo1anA/org.example.Sensors/room1/temperature"
        );
        assert_eq!(
            topics.data("org.example.Obj", "/"),
            "test/2TBn-jNESuuHamE2Zo1anA/org.example.Obj/"
        );
    }

    #[test]
    fn control_topics_follow_the_protocol() {
        let topics = Topics::new("r", "d");
        assert_eq!(topics.empty_cache(), "r/d/control/emptyCache");
        assert_eq!(
            topics.producer_properties(),
            "r/d/control/producer/properties"
        );
        assert_eq!(
            topics.consumer_properties(),
            "r/d/control/consumer/properties"
        );
        assert_eq!(topics.interface_filter("org.x.Y"), "r/d/org.x.Y/#");
    }

    #[test]
    fn incoming_topics_are_split_into_interface_and_path() {
        let topics = Topics::new("r", "d");
        assert_eq!(
            topics.parse("r/d/control/consumer/properties"),
            Some(IncomingTopic::ConsumerProperties)
        );
        assert_eq!(
            topics.parse("r/d/org.x.Y/led/1/enabled"),
            Some(IncomingTopic::Data {
                interface: "org.x.Y",
                path: "/led/1/enabled"
            })
        );
    }

    #[test]
    fn foreign_or_malformed_topics_are_not_parsed() {
        let topics = Topics::new("r", "d");
        for topic in [
            "r/other/org.x.Y/a",
            "r/dd/org.x.Y/a",
            "r/d",
            "r/d/org.x.Y",
            "r/d//a",
            "r/d/control/x",
        ] {
            assert_eq!(topics.parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn remaining_length_counts_topic_prefix_and_packet_id() {
        assert_eq!(remaining_length("a/b", 0, 10), 2 + 3 + 10);
        assert_eq!(remaining_length("a/b", 1, 10), 2 + 3 + 2 + 10);
    }
}
