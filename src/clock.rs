//! Wall-clock time as Astarte counts it: milliseconds since the Unix epoch. On the ground
//! floor: the store, the queue, the transport and the API all stamp with it.

/// Now, in ms since the Unix epoch (0 for a clock before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
