//! `watch` event types (memcached's `LOG_*` bits).

/// `rawcmds`: accepted; memcached 1.6.18 logs nothing under it.
pub const RAWCMDS: u16 = 1 << 0;
/// `evictions`: `type=eviction`.
pub const EVICTIONS: u16 = 1 << 1;
/// `fetchers`: `type=item_get`.
pub const FETCHERS: u16 = 1 << 2;
/// `mutations`: `type=item_store`.
pub const MUTATIONS: u16 = 1 << 3;
/// `sysevents`: accepted; nothing of ours is logged under it.
pub const SYSEVENTS: u16 = 1 << 4;
/// `connevents`: `type=conn_new`, `type=conn_close`.
pub const CONNEVENTS: u16 = 1 << 5;
/// `proxyreqs`: accepted (a proxy build's type); nothing is logged.
pub const PROXYREQS: u16 = 1 << 6;
/// `proxyevents`: accepted; nothing is logged.
pub const PROXYEVENTS: u16 = 1 << 7;
/// `proxyuser`: accepted; nothing is logged.
pub const PROXYUSER: u16 = 1 << 8;
