//! Sockets and threads: listeners and the acceptor (`listener`), one `mio` event loop
//! per worker (`worker`), a connection = `transport` + session (`conn`), the in-memory
//! peer that drives a session without threads (`loopback`), the `/metrics` HTTP
//! listener (`metrics_http`).

mod conn;
pub mod listener;
pub mod loopback;
pub mod metrics_http;
pub mod transport;
pub mod worker;
