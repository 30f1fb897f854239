//! The agent's resident memory (see docs/benchmark.md, "Memory").
//!
//! Two things set at start-up and one done once the agent is connected:
//!
//! - **One malloc arena.** glibc gives every thread that allocates an arena of its own (the
//!   store's writer, the network thread, tokio's blocking threads, the TPM worker), each
//!   keeping freed memory for itself. The agent's threads allocate little and rarely at the
//!   same time, and small blocks come from glibc's per-thread cache without a lock: one arena
//!   is enough. Set with `mallopt` before the first thread starts, so the service needs no
//!   `MALLOC_ARENA_MAX` in its unit (and behaves the same when started by hand or by
//!   another init system). musl has no arenas: nothing to do there.
//! - **After start-up**, [`trim_after_start`] gives back what only start-up needed: freed heap
//!   memory (`malloc_trim`), and the pages of code and read-only data mapped from the agent's
//!   binary and its libraries (configuration parsing, pairing, key generation, the TLS and
//!   D-Bus handshakes). Those mappings are dropped from the process (`MADV_DONTNEED` on clean,
//!   read-only, private file mappings): the pages stay in the page cache, and the ones the
//!   agent still runs come back with a minor fault (no disk read) the first time they are
//!   used. What start-up alone touched is then ordinary page cache the kernel may reclaim,
//!   not memory the agent holds mapped.

/// Task: calls [`trim_after_start`] once, when the agent is connected for the first time
/// (start-up is over: configuration, pairing, credentials, D-Bus, the TLS handshake), then
/// waits to be cancelled.
pub async fn trim_once_connected(
    mut state: crate::state::StateRx,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let connected = state.wait_for(|state| *state == crate::state::AgentState::Connected);
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        result = connected => if result.is_err() { return Ok(()) },
    }
    let _ = tokio::task::spawn_blocking(trim_after_start).await;
    cancel.cancelled().await;
    Ok(())
}

/// Limits glibc's malloc to one arena. Call first in `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// Gives back the memory only start-up needed (see the module's documentation). Blocking
/// (reads `/proc/self/smaps`, a few milliseconds): call it from a blocking context.
pub fn trim_after_start() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => {
            let dropped: usize = clean_file_mappings(&smaps)
                .into_iter()
                .map(|mapping| drop_mapping(&mapping))
                .sum();
            tracing::debug!(kib = dropped / 1024, "dropped start-up mappings");
        }
        Err(error) => tracing::debug!(%error, "couldn't read /proc/self/smaps"),
    }
}

/// A mapping of a file, as `/proc/self/smaps` describes it.
#[derive(Debug, PartialEq)]
struct Mapping {
    start: usize,
    len: usize,
    resident_kib: usize,
}

/// The private, read-only mappings of files that hold no page of their own (no copy-on-write
/// page, resident or swapped: relocated data, made read-only after relocation, holds such
/// pages and is kept).
/// Dropping their pages loses nothing: they are read again from the file.
fn clean_file_mappings(smaps: &str) -> Vec<Mapping> {
    let mut found = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = range(first) {
            if let Some((mapping, true)) = current.take() {
                found.push(mapping);
            }
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            let eligible = perms.len() == 4
                && perms.as_bytes()[1] != b'w'
                && perms.as_bytes()[3] == b'p'
                && path.starts_with('/');
            current = Some((
                Mapping {
                    start,
                    len: end - start,
                    resident_kib: 0,
                },
                eligible,
            ));
            continue;
        }
        let Some((mapping, eligible)) = current.as_mut() else {
            continue;
        };
        let kib = words.next().and_then(|value| value.parse::<usize>().ok());
        match (first, kib) {
            ("Rss:", Some(kib)) => mapping.resident_kib = kib,
            // Copy-on-write pages, resident or swapped out: they exist nowhere else.
            // (Private_Dirty is not a sign: it also counts page-cache pages not yet written
            // back, as for a binary just installed.)
            ("Anonymous:" | "Swap:", Some(kib)) if kib > 0 => *eligible = false,
            _ => {}
        }
    }
    if let Some((mapping, true)) = current {
        found.push(mapping);
    }
    found.retain(|mapping| mapping.resident_kib > 0);
    found
}

/// `start-end` in hexadecimal, the first word of a mapping's header line.
fn range(word: &str) -> Option<(usize, usize)> {
    let (start, end) = word.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end))
}

/// Drops the mapping's pages from the process; the bytes that were resident.
fn drop_mapping(mapping: &Mapping) -> usize {
    // SAFETY: the range is a whole private, read-only file mapping of this process with no
    // page of its own: MADV_DONTNEED only unmaps pages that are read again from the file.
    let done = unsafe {
        nix::libc::madvise(
            mapping.start as *mut nix::libc::c_void,
            mapping.len,
            nix::libc::MADV_DONTNEED,
        )
    };
    if done == 0 {
        mapping.resident_kib * 1024
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55b20969e000-55b20989e000 r--p 00000000 fe:00 6621497                    /usr/bin/astarte-agent
Size:               2048 kB
Rss:                1032 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55b20989e000-55b209d07000 r-xp 001ff000 fe:00 6621497                    /usr/bin/astarte-agent
Size:               4516 kB
Rss:                4452 kB
Shared_Dirty:          0 kB
Private_Dirty:      4452 kB
Anonymous:             0 kB
55b209d07000-55b209d4d000 r--p 00667000 fe:00 6621497                    /usr/bin/astarte-agent
Rss:                 280 kB
Private_Dirty:       280 kB
Anonymous:           280 kB
55b209d4c000-55b209d4d000 r--p 006ac000 fe:00 6621497                    /usr/bin/astarte-agent
Rss:                   4 kB
Anonymous:             0 kB
Swap:                  4 kB
55b209d4d000-55b209d50000 rw-p 006ac000 fe:00 6621497                    /usr/bin/astarte-agent
Rss:                  12 kB
Anonymous:            12 kB
55b21c943000-55b21c9fa000 rw-p 00000000 00:00 0                          [heap]
Rss:                 620 kB
7f625d712000-7f625d71a000 rw-s 00000000 fe:00 835689                     /var/lib/astarte-agent/agent.db-shm
Rss:                  32 kB
7f625dc25000-7f625dd19000 r-xp 00026000 fe:00 326791                     /usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6
Rss:                 908 kB
Anonymous:             0 kB
7f625dd19000-7f625dd1a000 r--p 00026000 fe:00 326791                     /usr/lib/x86_64-linux-gnu/libempty.so
Rss:                   0 kB
7fff118ea000-7fff11913000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_dropped() {
        let found = clean_file_mappings(SMAPS);
        assert_eq!(
            found,
            [
                Mapping {
                    start: 0x55b20969e000,
                    len: 0x200000,
                    resident_kib: 1032
                },
                Mapping {
                    start: 0x55b20989e000,
                    len: 0x469000,
                    resident_kib: 4452
                },
                Mapping {
                    start: 0x7f625dc25000,
                    len: 0xf4000,
                    resident_kib: 908
                },
            ]
        );
    }

    #[test]
    fn trimming_leaves_a_working_process_and_finds_its_code() {
        trim_after_start();
        // Code, read-only data and the heap still work (pages come back from the file)...
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        // ...and the live smaps parse: this test binary's code is a clean file mapping.
        let text = clean_file_mappings(&smaps);
        assert!(!text.is_empty(), "{smaps}");
    }
}
