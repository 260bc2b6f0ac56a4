//! Counters and the `stats` command's output.
