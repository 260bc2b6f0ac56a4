//! Listeners, per-core workers and connections.
