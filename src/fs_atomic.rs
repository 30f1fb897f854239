//! Crash-safe file replacement: a reader sees the old content or the new, never a mix.
