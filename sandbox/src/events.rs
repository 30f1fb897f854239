//! What one client did on the broker, read back from mosquitto's `log_type all` log: lets tests
//! assert the handshake order and that the broker refused a publish.

/// One thing the broker logged about a client, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// CONNECT accepted. `protocol_level` is the MQTT level: 4 is 3.1.1 (`p2` in the log),
    /// 3 is 3.1, 5 is 5.0.
    Connected {
        protocol_level: u8,
        clean_session: bool,
        keep_alive: u16,
        username: Option<String>,
    },
    ConnAck {
        session_present: bool,
        return_code: u8,
    },
    /// One topic filter of a SUBSCRIBE (a packet with several filters gives several events).
    Subscribe {
        topic: String,
        qos: u8,
    },
    Unsubscribe {
        topic: String,
    },
    /// A PUBLISH from the client that the broker accepted.
    Publish(LoggedPublish),
    /// A PUBLISH from the client that the ACL refused.
    PublishDenied(LoggedPublish),
    /// A PUBLISH the broker sent to the client.
    Delivered(LoggedPublish),
    /// A PUBREL from the client: it ends the QoS 2 exchange of packet id `mid`.
    PubRel {
        mid: u16,
    },
    /// The connection ended; `reason` is the rest of mosquitto's line.
    Disconnected {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPublish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload_len: usize,
}

/// The events of `client_id` in `log`, in order. Lines that don't parse are skipped.
pub fn parse_events(log: &str, client_id: &str) -> Vec<BrokerEvent> {
    let mut events = Vec::new();
    let mut lines = log.lines().map(strip_timestamp).peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("Received SUBSCRIBE from ") {
            if rest == client_id {
                // mosquitto logs each filter on a tab-indented line right after, each followed
                // by a `<client id> <qos> <filter>` line.
                let echo = format!("{client_id} ");
                while let Some(&next) = lines.peek() {
                    if let Some(filter) = next.strip_prefix('\t') {
                        events.extend(subscription(filter));
                    } else if !next.strip_prefix(&echo).is_some_and(starts_with_digit) {
                        break;
                    }
                    lines.next();
                }
            }
        } else if let Some(rest) = line.strip_prefix("Received UNSUBSCRIBE from ") {
            if rest == client_id {
                while let Some(filter) = lines.peek().and_then(|l| l.strip_prefix('\t')) {
                    events.push(BrokerEvent::Unsubscribe {
                        topic: filter.to_owned(),
                    });
                    lines.next();
                }
            }
        } else if let Some(event) = single_line_event(line, client_id) {
            events.push(event);
        }
    }
    events
}

fn single_line_event(line: &str, id: &str) -> Option<BrokerEvent> {
    let after = |prefix: &str| line.strip_prefix(prefix)?.strip_prefix(id);
    if let Some(rest) = line.strip_prefix("New client connected from ") {
        let (_, rest) = rest.split_once(" as ")?;
        return connected(rest.strip_prefix(id)?.strip_prefix(" (")?);
    }
    if let Some(rest) = after("Sending CONNACK to ") {
        let (present, code) = rest
            .strip_prefix(" (")?
            .strip_suffix(')')?
            .split_once(", ")?;
        return Some(BrokerEvent::ConnAck {
            session_present: present == "1",
            return_code: code.parse().ok()?,
        });
    }
    if let Some(rest) = after("Received PUBLISH from ") {
        return publish(rest).map(BrokerEvent::Publish);
    }
    if let Some(rest) = after("Received PUBREL from ") {
        let mid = rest.strip_prefix(" (Mid: ")?.strip_suffix(')')?;
        return Some(BrokerEvent::PubRel {
            mid: mid.parse().ok()?,
        });
    }
    if let Some(rest) = after("Denied PUBLISH from ") {
        return publish(rest).map(BrokerEvent::PublishDenied);
    }
    if let Some(rest) = after("Sending PUBLISH to ") {
        return publish(rest).map(BrokerEvent::Delivered);
    }
    if let Some(rest) = after("Client ") {
        let reason = rest.strip_prefix(' ')?;
        let ended = reason.contains("disconnect") || reason.contains("closed its connection");
        return ended.then(|| BrokerEvent::Disconnected {
            reason: reason.to_owned(),
        });
    }
    if let Some(rest) = after("Socket error on client ") {
        return Some(BrokerEvent::Disconnected {
            reason: format!("socket error{rest}"),
        });
    }
    None
}

/// `p2, c1, k60, u'realm/dev')`
fn connected(fields: &str) -> Option<BrokerEvent> {
    let fields = fields.strip_suffix(").").or(fields.strip_suffix(')'))?;
    let (flags, username) = match fields.split_once(", u'") {
        Some((flags, user)) => (flags, Some(user.strip_suffix('\'')?.to_owned())),
        None => (fields, None),
    };
    let mut protocol_level = None;
    let mut clean_session = None;
    let mut keep_alive = None;
    for flag in flags.split(", ") {
        match flag.split_at_checked(1)? {
            ("p", "1") => protocol_level = Some(3),
            ("p", "2") => protocol_level = Some(4),
            ("p", "5") => protocol_level = Some(5),
            ("c", c) => clean_session = Some(c == "1"),
            ("k", k) => keep_alive = k.parse().ok(),
            _ => {}
        }
    }
    Some(BrokerEvent::Connected {
        protocol_level: protocol_level?,
        clean_session: clean_session?,
        keep_alive: keep_alive?,
        username,
    })
}

/// ` (d0, q1, r0, m1, 'topic', ... (5 bytes))`
fn publish(rest: &str) -> Option<LoggedPublish> {
    let rest = rest.strip_prefix(" (")?;
    let (head, tail) = rest.split_once(", '")?;
    let (topic, size) = tail.rsplit_once("', ... (")?;
    let payload_len = size.strip_suffix(" bytes))")?.parse().ok()?;
    let mut qos = None;
    let mut retain = None;
    for flag in head.split(", ") {
        match flag.split_at_checked(1)? {
            ("q", q) => qos = q.parse().ok(),
            ("r", r) => retain = Some(r == "1"),
            _ => {}
        }
    }
    Some(LoggedPublish {
        topic: topic.to_owned(),
        qos: qos?,
        retain: retain?,
        payload_len,
    })
}

/// `test/dev/# (QoS 2)`
fn subscription(filter: &str) -> Option<BrokerEvent> {
    let (topic, qos) = filter.rsplit_once(" (QoS ")?;
    Some(BrokerEvent::Subscribe {
        topic: topic.to_owned(),
        qos: qos.strip_suffix(')')?.parse().ok()?,
    })
}

fn starts_with_digit(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// Drops mosquitto's `1700000000: ` prefix.
fn strip_timestamp(line: &str) -> &str {
    match line.split_once(": ") {
        Some((ts, rest)) if ts.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
1795419663: New connection from 127.0.0.1:47892 on port 18883.
1795419663: New client connected from 127.0.0.1:47892 as test/dev1 (p2, c0, k60, u'test/dev1').
1795419663: New client connected from 127.0.0.1:47893 as test/dev10 (p2, c1, k60, u'test/dev10').
1795419663: No will message specified.
1795419663: Sending CONNACK to test/dev1 (1, 0)
1795419663: Received SUBSCRIBE from test/dev1
1795419663: \ttest/dev1/control/consumer/properties (QoS 2)
1795419663: test/dev1 2 test/dev1/control/consumer/properties
1795419663: \ttest/dev1/org.Iface/# (QoS 1)
1795419663: test/dev1 1 test/dev1/org.Iface/#
1795419663: Sending SUBACK to test/dev1
1795419663: Received PUBLISH from test/dev10 (d0, q1, r0, m1, 'test/dev10', ... (5 bytes))
1795419663: Received PUBLISH from test/dev1 (d0, q2, r0, m1, 'test/dev1', ... (12 bytes))
1795419663: Denied PUBLISH from test/dev1 (d0, q1, r1, m2, 'test/dev2/x', ... (0 bytes))
1795419663: Sending PUBLISH to test/dev1 (d0, q2, r0, m1, 'test/dev1/control/consumer/properties', ... (12 bytes))
1795419664: Received DISCONNECT from test/dev1
1795419664: Client test/dev1 disconnected.
";

    fn publish(topic: &str, qos: u8, retain: bool, payload_len: usize) -> LoggedPublish {
        LoggedPublish {
            topic: topic.to_owned(),
            qos,
            retain,
            payload_len,
        }
    }

    #[test]
    fn events_of_one_client_are_parsed_in_order() {
        let events = parse_events(LOG, "test/dev1");
        let expected = vec![
            BrokerEvent::Connected {
                protocol_level: 4,
                clean_session: false,
                keep_alive: 60,
                username: Some("test/dev1".to_owned()),
            },
            BrokerEvent::ConnAck {
                session_present: true,
                return_code: 0,
            },
            BrokerEvent::Subscribe {
                topic: "test/dev1/control/consumer/properties".to_owned(),
                qos: 2,
            },
            BrokerEvent::Subscribe {
                topic: "test/dev1/org.Iface/#".to_owned(),
                qos: 1,
            },
            BrokerEvent::Publish(publish("test/dev1", 2, false, 12)),
            BrokerEvent::PublishDenied(publish("test/dev2/x", 1, true, 0)),
            BrokerEvent::Delivered(publish(
                "test/dev1/control/consumer/properties",
                2,
                false,
                12,
            )),
            BrokerEvent::Disconnected {
                reason: "disconnected.".to_owned(),
            },
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn a_pubrel_names_its_packet_id() {
        let log = "1796617853: Received PUBREL from test/dev1 (Mid: 42)\n\
                   1796617853: Received PUBREL from test/dev10 (Mid: 7)\n";
        assert_eq!(
            parse_events(log, "test/dev1"),
            vec![BrokerEvent::PubRel { mid: 42 }]
        );
    }

    #[test]
    fn a_client_whose_id_extends_another_is_not_mixed_in() {
        let events = parse_events(LOG, "test/dev10");
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1],
            BrokerEvent::Publish(publish("test/dev10", 1, false, 5))
        );
    }
}
