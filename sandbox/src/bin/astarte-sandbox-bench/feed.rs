//! Input for `mosquitto_pub -l`: one line per message, the send time in zero-padded decimal
//! digits so every payload has the same size as the agent's. Each line is written on its own
//! (no buffering). The first line's time starts the floor's clock; `mosquitto_pub` reads ahead
//! and queues lines inside, so the per-line times say nothing about its latency.

use std::io::Write;

use crate::{BoxResult, now_us};

pub fn run(count: u64, width: usize) -> BoxResult<()> {
    let mut out = std::io::stdout().lock();
    let mut line = String::with_capacity(width + 1);
    for _ in 0..count {
        line.clear();
        line.push_str(&format!("{:0width$}\n", now_us()));
        out.write_all(line.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}
