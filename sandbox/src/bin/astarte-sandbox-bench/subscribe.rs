//! The MQTT end of every row: subscribed with the sandbox's observer identity to one topic,
//! it takes the arrival time of each message and the send time it carries, and nothing more.

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use crate::{BoxResult, Format, now_us, quantile, runtime};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PACKET: usize = 1 << 20;

pub struct Options {
    pub dir: PathBuf,
    pub topic: String,
    pub count: u64,
    pub format: Format,
    pub qos: u8,
    pub idle_secs: u64,
}

pub fn run(opts: Options) -> BoxResult<()> {
    runtime()?.block_on(drive(opts))
}

async fn drive(opts: Options) -> BoxResult<()> {
    let config = astarte_sandbox::observer_config_from_dir(&opts.dir)?;
    let tls = astarte_sandbox::client_config(&config.ca_pem, Some(&config.identity))?;
    let id = format!("bench-subscriber-{}", std::process::id());
    let mut options = MqttOptions::new(id, config.host, config.port);
    options
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)))
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let qos = match opts.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let (client, mut eventloop) = AsyncClient::new(options, 16);

    let subscribed = async {
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client.subscribe(opts.topic.as_str(), qos).await?;
                }
                Event::Incoming(Packet::SubAck(ack)) => {
                    return Ok::<_, Box<dyn std::error::Error>>(ack);
                }
                _ => {}
            }
        }
    };
    let ack = tokio::time::timeout(CONNECT_TIMEOUT, subscribed)
        .await
        .map_err(|_| "not subscribed within 10 s")??;
    if ack
        .return_codes
        .iter()
        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
    {
        return Err(format!("the broker refused the subscription to {}", opts.topic).into());
    }
    println!("ready");

    let idle = Duration::from_secs(opts.idle_secs);
    let mut latencies = Vec::with_capacity(opts.count as usize);
    let mut min_send_us = u64::MAX;
    let mut first_recv_us = 0;
    let mut last_recv_us = 0;
    let mut undecodable = 0u64;
    while (latencies.len() as u64 + undecodable) < opts.count {
        let event = match tokio::time::timeout(idle, eventloop.poll()).await {
            Ok(event) => event?,
            Err(_) => break,
        };
        let Event::Incoming(Packet::Publish(publish)) = event else {
            continue;
        };
        let recv_us = now_us();
        if first_recv_us == 0 {
            first_recv_us = recv_us;
        }
        last_recv_us = recv_us;
        match send_time(&publish.payload, opts.format) {
            Some(send_us) => {
                min_send_us = min_send_us.min(send_us);
                latencies.push(recv_us.saturating_sub(send_us));
            }
            None => undecodable += 1,
        }
    }
    latencies.sort_unstable();
    let received = latencies.len() as u64 + undecodable;
    let summary = serde_json::json!({
        "received": received,
        "undecodable": undecodable,
        "min_send_us": if min_send_us == u64::MAX { 0 } else { min_send_us },
        "first_recv_us": first_recv_us,
        "last_recv_us": last_recv_us,
        "p50_us": quantile(&latencies, 0.50),
        "p99_us": quantile(&latencies, 0.99),
        "max_us": latencies.last().copied().unwrap_or(0),
    });
    println!("{summary}");
    if received < opts.count {
        return Err(format!(
            "received {received} of {} messages ({} s without one)",
            opts.count, opts.idle_secs
        )
        .into());
    }
    Ok(())
}

/// The send time a payload carries, µs of `CLOCK_MONOTONIC`.
fn send_time(payload: &[u8], format: Format) -> Option<u64> {
    match format {
        // {"v": <double>}: length, 0x01 (double), "v\0", 8 bytes, 0x00. Any other document
        // (e.g. with a "t") goes through the BSON decoder.
        Format::Bson => {
            let value = match payload {
                [16, 0, 0, 0, 1, b'v', 0, rest @ ..] if rest.len() == 9 => {
                    f64::from_le_bytes(rest[..8].try_into().ok()?)
                }
                _ => bson::Document::from_reader(payload)
                    .ok()?
                    .get_f64("v")
                    .ok()?,
            };
            (value.is_finite() && value >= 0.0).then_some(value as u64)
        }
        Format::Text => std::str::from_utf8(payload).ok()?.trim().parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_read_from_bson_and_text() {
        let mut bytes = Vec::new();
        bson::doc! { "v": 1234567.0 }.to_writer(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(send_time(&bytes, Format::Bson), Some(1_234_567));
        let mut with_t = Vec::new();
        bson::doc! { "v": 42.0, "t": bson::DateTime::from_millis(1) }
            .to_writer(&mut with_t)
            .unwrap();
        assert_eq!(send_time(&with_t, Format::Bson), Some(42));
        assert_eq!(
            send_time(b"0000000001234567", Format::Text),
            Some(1_234_567)
        );
        assert_eq!(send_time(b"nope", Format::Text), None);
    }
}
