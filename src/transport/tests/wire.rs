//! What the session handed to rumqttc, in a few words.

use rumqttc::Request;

use super::{BASE, SENSOR};

/// A request rumqttc wrote, with the packet id it gave it (0 for QoS 0 and acknowledgements).
#[derive(Debug)]
pub struct Written {
    pub pkid: u16,
    pub request: Request,
}

impl Written {
    pub fn describe(&self) -> String {
        describe(&self.request)
    }
}

/// A request in a few words: `subscribe <filters>`, a publish's topic below the device's
/// base (`introspection` for the base itself), or the kind of acknowledgement.
pub fn describe(request: &Request) -> String {
    let relative = |topic: &str| match topic.strip_prefix(BASE) {
        Some("") => "introspection".to_owned(),
        Some(rest) => rest.trim_start_matches('/').to_owned(),
        None => topic.to_owned(),
    };
    match request {
        Request::Subscribe(subscribe) => {
            let filters: Vec<String> = subscribe
                .filters
                .iter()
                .map(|filter| relative(&filter.path))
                .collect();
            format!("subscribe {}", filters.join(" "))
        }
        Request::Publish(publish) => relative(&publish.topic),
        Request::PubAck(ack) => format!("puback {}", ack.pkid),
        Request::PubRec(ack) => format!("pubrec {}", ack.pkid),
        Request::Disconnect(_) => "disconnect".into(),
        other => format!("{other:?}"),
    }
}

pub fn descriptions<'a>(written: impl IntoIterator<Item = &'a Written>) -> Vec<String> {
    written.into_iter().map(Written::describe).collect()
}

/// The tags of the [`SENSOR`] messages among `requests`, in order.
pub fn tags<'a>(requests: impl IntoIterator<Item = &'a Request>) -> Vec<u8> {
    requests
        .into_iter()
        .filter_map(|request| match request {
            Request::Publish(publish) if publish.topic.starts_with(&format!("{BASE}/{SENSOR}")) => {
                Some(publish.payload[0])
            }
            _ => None,
        })
        .collect()
}

pub fn written_tags<'a>(written: impl IntoIterator<Item = &'a Written>) -> Vec<u8> {
    tags(written.into_iter().map(|written| &written.request))
}
