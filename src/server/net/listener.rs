//! Listening sockets and the acceptor thread that hands connections to workers.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::daemon::{ListenError, ListenKind};
use crate::server::net::transport::{Stream, Transport};
use crate::server::shared::Shared;

/// A connection accepted and on its way to a worker.
pub struct NewConn {
    /// The socket.
    pub socket: Stream,
    /// Peer address as `stats conns` prints it.
    pub peer: String,
    /// Listener address as `stats conns` prints it.
    pub listen: String,
    /// Accepted on a TLS listener (`-Z`, not `notls:`).
    pub tls: bool,
}

/// A worker's mailbox: a queue plus the waker of its poll.
#[derive(Clone)]
pub struct Mailbox {
    /// Queue of new connections.
    pub tx: Sender<NewConn>,
    /// Wakes the worker.
    pub waker: Arc<Waker>,
}

enum Listener {
    /// A TCP listener, its name, and whether it speaks TLS.
    Tcp(TcpListener, String, bool),
    Unix(UnixListener, String, PathBuf),
}

/// The bound listening sockets.
pub struct Listeners {
    list: Vec<Listener>,
}

fn tcp_listener(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(TcpListener::from_std(sock.into()))
}

impl Listeners {
    /// Binds what the configuration asks for: a unix socket (`-s`), or TCP on every
    /// `-l` address (all interfaces when none) at `-p`. `-p 0` without `-l` means no
    /// TCP, as in memcached. Errors say which kind of listener failed and why, for
    /// [`crate::daemon::listen_failure`] to print as memcached does.
    pub fn bind(cfg: &Config) -> Result<Listeners, (ListenKind, ListenError)> {
        let mut list = Vec::new();
        if let Some(path) = &cfg.unix_socket {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            let l =
                UnixListener::bind(path).map_err(|e| (ListenKind::Unix, ListenError::Bind(e)))?;
            let mode = cfg.unix_mask & 0o777;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
            let name = format!("unix:{}", path.display());
            list.push(Listener::Unix(l, name, path.clone()));
            return Ok(Listeners { list });
        }
        if cfg.port == 0 && cfg.listen.is_empty() {
            return Ok(Listeners { list });
        }
        for (host, port, tls) in cfg.listen_plan() {
            let addrs: Vec<SocketAddr> = match host {
                None => vec![
                    SocketAddr::from(([0, 0, 0, 0], port)),
                    SocketAddr::from(([0u16; 8], port)),
                ],
                Some(h) => (h.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|_| {
                        (
                            ListenKind::Tcp,
                            ListenError::Resolve("Name or service not known".into()),
                        )
                    })?
                    .collect(),
            };
            let mut bound = 0;
            let mut last_err = None;
            for a in addrs {
                match tcp_listener(a, cfg.backlog) {
                    Ok(l) => {
                        let name = match l.local_addr() {
                            Ok(SocketAddr::V4(v)) => format!("tcp:{}:{}", v.ip(), v.port()),
                            Ok(SocketAddr::V6(v)) => format!("tcp6:[{}]:{}", v.ip(), v.port()),
                            Err(_) => format!("tcp:{a}"),
                        };
                        list.push(Listener::Tcp(l, name, tls));
                        bound += 1;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if bound == 0 {
                let e =
                    last_err.unwrap_or_else(|| std::io::Error::from(ErrorKind::AddrNotAvailable));
                return Err((ListenKind::Tcp, ListenError::Bind(e)));
            }
        }
        Ok(Listeners { list })
    }

    /// (fd, address) of every listener, for `stats conns`.
    pub fn info(&self) -> Vec<(i32, String)> {
        self.list
            .iter()
            .map(|l| match l {
                Listener::Tcp(t, n, _) => (t.as_raw_fd(), n.clone()),
                Listener::Unix(u, n, _) => (u.as_raw_fd(), n.clone()),
            })
            .collect()
    }

    /// Each listener's name and whether it speaks TLS (`-Z` and not `notls:`; a unix
    /// socket never does), for the start-up log.
    pub fn tls_flags(&self) -> Vec<(String, bool)> {
        self.list
            .iter()
            .map(|l| match l {
                Listener::Tcp(_, n, tls) => (n.clone(), *tls),
                Listener::Unix(_, n, _) => (n.clone(), false),
            })
            .collect()
    }

    /// Bound TCP addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.list
            .iter()
            .filter_map(|l| match l {
                Listener::Tcp(t, _, _) => t.local_addr().ok(),
                Listener::Unix(..) => None,
            })
            .collect()
    }
}

const WAKER: Token = Token(usize::MAX);

/// `TCP_NOTSENT_LOWAT` of client sockets: how much unsent reply data the kernel
/// queues per connection before a write returns `EAGAIN`.
const NOTSENT_LOWAT: u32 = 128 << 10;

/// The acceptor: owns the listeners, enforces `-c`, spreads connections round-robin.
pub struct Acceptor {
    poll: Poll,
    listeners: Listeners,
    shared: Arc<Shared>,
    mailboxes: Vec<Mailbox>,
    next: usize,
    waker: Arc<Waker>,
}

impl Acceptor {
    /// Registers the listeners with a new poll.
    pub fn new(
        mut listeners: Listeners,
        shared: Arc<Shared>,
        mailboxes: Vec<Mailbox>,
    ) -> std::io::Result<Acceptor> {
        let poll = Poll::new()?;
        for (i, l) in listeners.list.iter_mut().enumerate() {
            match l {
                Listener::Tcp(t, _, _) => {
                    poll.registry().register(t, Token(i), Interest::READABLE)?
                }
                Listener::Unix(u, _, _) => {
                    poll.registry().register(u, Token(i), Interest::READABLE)?
                }
            }
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Acceptor {
            poll,
            listeners,
            shared,
            mailboxes,
            next: 0,
            waker,
        })
    }

    /// The waker that interrupts the acceptor (used at stop).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Accepts until the server stops.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("acceptor poll failed: {e}");
                break;
            }
            if self.shared.net.stopping.load(Ordering::Relaxed) {
                break;
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.accept_all(ev.token().0);
                }
            }
        }
        for l in &self.listeners.list {
            if let Listener::Unix(_, _, path) = l {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn accept_all(&mut self, idx: usize) {
        loop {
            let accepted = match self.listeners.list.get(idx) {
                Some(Listener::Tcp(t, name, tls)) => t.accept().map(|(s, peer)| {
                    let _ = s.set_nodelay(true);
                    // Replies a client has not taken wait in our buffer (inside the
                    // buffer budget), not by megabytes in the kernel's send queue:
                    // the socket takes more only when little is left unsent.
                    let _ = socket2::SockRef::from(&s).set_tcp_notsent_lowat(NOTSENT_LOWAT);
                    let peer = match peer {
                        SocketAddr::V4(v) => format!("tcp:{}:{}", v.ip(), v.port()),
                        SocketAddr::V6(v) => format!("tcp6:[{}]:{}", v.ip(), v.port()),
                    };
                    (Stream::Tcp(s), peer, name.clone(), *tls)
                }),
                Some(Listener::Unix(u, name, _)) => u
                    .accept()
                    .map(|(s, _)| (Stream::Unix(s), name.clone(), name.clone(), false)),
                None => return,
            };
            match accepted {
                Ok((stream, peer, listen, tls)) => self.hand_off(stream, peer, listen, tls),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and let the next readiness retry.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn hand_off(&mut self, socket: Stream, peer: String, listen: String, tls: bool) {
        let c = &self.shared.net.conns;
        let max = self.shared.config.max_conns as u64;
        if c.curr_connections.load(Ordering::Relaxed) >= max {
            c.rejected_connections.fetch_add(1, Ordering::Relaxed);
            let _ = Transport::new(socket).write(b"ERROR Too many open connections\r\n");
            log::info!("rejected connection from {peer}: too many open connections");
            return;
        }
        let now = c.curr_connections.fetch_add(1, Ordering::Relaxed) + 1;
        c.total_connections.fetch_add(1, Ordering::Relaxed);
        let listeners = self.listeners.list.len() as u64;
        c.connection_structures
            .fetch_max(now + listeners, Ordering::Relaxed);
        let n = self.mailboxes.len();
        let mb = &self.mailboxes[self.next % n];
        self.next = self.next.wrapping_add(1);
        if mb
            .tx
            .send(NewConn {
                socket,
                peer,
                listen,
                tls,
            })
            .is_ok()
        {
            let _ = mb.waker.wake();
        } else {
            c.curr_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
