//! The D-Bus transport (design layer 5): one thread running zbus, which
//! only moves messages. It accepts peer-to-peer connections on the private
//! socket (refusing peers other than root and the daemon's own user before
//! authentication), connects to a message bus when asked, and hands every
//! method call to the main loop through a [`Bridge`]: a queue plus an
//! eventfd the main loop polls. The main loop decodes, decides and builds
//! every reply and signal itself, and puts them in the connection's
//! outbox, which a task of this thread writes out.
//!
//! So the engine is never touched from here, a slow or vanished client only
//! holds up its own connection, and the cost of a call does not depend on
//! how many jobs there are (nothing is registered per job).

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use zbus::connection::Builder;
use zbus::message::{Message, Type};
use zbus::{Connection, Guid};
use zruntime::SharedRuntime;
use zruntime::mpmc;

/// Names a connection for the main loop.
pub type ConnId = u64;

/// How many messages may wait to be written to one peer; a peer that
/// lets more pile up is disconnected.
pub const OUTBOX: usize = 4096;

/// How long one write to a peer may take before the peer is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where messages to a connection go.
pub type Outbox = mpmc::Sender<Message>;

/// What the transport tells the main loop.
pub enum Incoming {
    /// A peer is connected (`bus`: a message bus, whose callers each have
    /// their own uid).
    Connected {
        conn: ConnId,
        bus: bool,
        outbox: Outbox,
        closer: Closer,
    },
    /// A method call; `uid` is the caller's.
    Call { conn: ConnId, uid: u32, msg: Message },
    /// The peer went away.
    Disconnected { conn: ConnId },
    /// Connecting to a bus failed.
    BusFailed { address: String, error: String },
}

/// Closes a connection from the main loop (a peer that does not read).
#[derive(Clone)]
pub struct Closer(Option<Arc<UnixStream>>, Option<Connection>);

impl Closer {
    pub fn close(&self) {
        if let Some(s) = &self.0 {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(c) = self.1.clone() {
            zruntime::spawn(async move {
                let _ = c.close().await;
            })
            .detach();
        }
    }
}

/// The queue from the transport to the main loop. The eventfd is written
/// when the queue turns non-empty; the main loop reads it before taking
/// the queue, so no wake-up is lost.
pub struct Bridge {
    queue: Mutex<VecDeque<Incoming>>,
    ready: EventFd,
    /// Outbox writers still running (see [`Control::flush`]).
    writers: AtomicUsize,
}

impl Bridge {
    pub fn new() -> nix::Result<Bridge> {
        Ok(Bridge {
            queue: Mutex::new(VecDeque::new()),
            ready: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            writers: AtomicUsize::new(0),
        })
    }

    fn push(&self, incoming: Incoming) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = q.is_empty();
        q.push_back(incoming);
        drop(q);
        if was_empty {
            let _ = self.ready.write(1);
        }
    }

    /// The fd to poll for input.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    /// Everything queued so far.
    pub fn take(&self) -> VecDeque<Incoming> {
        let _ = self.ready.read();
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Requests from the main loop to the transport.
enum Command {
    ConnectBus(String),
}

/// The main loop's handle on the transport thread.
pub struct Control {
    pub bridge: Arc<Bridge>,
    commands: mpmc::Sender<Command>,
}

/// Who may connect to the private socket: root and the daemon's own user
/// (libdbus' default server policy).
pub fn peer_allowed(uid: u32, own: u32) -> bool {
    uid == 0 || uid == own
}

impl Control {
    /// Starts the transport thread, serving `listener` (already bound).
    pub fn start(listener: UnixListener, own_uid: u32) -> std::io::Result<Control> {
        let bridge = Arc::new(Bridge::new()?);
        let (commands, receive) = mpmc::unbounded();
        let b = bridge.clone();
        std::thread::Builder::new().name("dbus".into()).spawn(move || {
            // A panic here would end D-Bus control for good: the
            // transport starts again on the same socket (the connections
            // it had are lost; the main loop forgets them as their
            // outboxes close).
            for attempt in 1.. {
                let Ok(listener) = listener.try_clone() else {
                    return;
                };
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    zbus::block_on(transport(listener, own_uid, b.clone(), receive.clone()))
                }));
                if run.is_ok() {
                    return;
                }
                tracing::error!("D-Bus: the transport failed (attempt {attempt}); starting it again");
                std::thread::sleep(Duration::from_millis(100 * attempt.min(50)));
            }
        })?;
        Ok(Control { bridge, commands })
    }

    /// Waits (at most `timeout`) until every outbox writer has ended, so
    /// that what was queued is written before the process ends. The main
    /// loop drops the outboxes first.
    pub fn flush(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.bridge.writers.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Connects to a message bus and requests `com.ubuntu.Upstart` there.
    pub fn connect_bus(&self, address: &str) {
        let _ = self.commands.try_send(Command::ConnectBus(address.to_string()));
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

async fn transport(
    listener: UnixListener,
    own_uid: u32,
    bridge: Arc<Bridge>,
    commands: mpmc::Receiver<Command>,
) {
    let rt = match SharedRuntime::current() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("D-Bus: no runtime: {e}");
            return;
        }
    };
    {
        let bridge = bridge.clone();
        rt.spawn("bus commands", async move {
            while let Ok(cmd) = commands.recv().await {
                match cmd {
                    Command::ConnectBus(address) => {
                        let bridge = bridge.clone();
                        zruntime::spawn(serve_bus(address, bridge)).detach();
                    }
                }
            }
        })
        .detach();
    }
    let listener = match zruntime::net::unix::UnixListener::from_std(&rt, listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("D-Bus: unable to watch the private socket: {e}");
            return;
        }
    };
    let guid = Guid::generate();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let stream = stream.into_std();
                let uid =
                    match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) {
                        Ok(c) => c.uid(),
                        Err(e) => {
                            tracing::warn!("D-Bus: unable to read peer credentials: {e}");
                            continue;
                        }
                    };
                if !peer_allowed(uid, own_uid) {
                    tracing::info!("D-Bus: refused a connection from uid {uid}");
                    continue;
                }
                let guid = guid.clone();
                rt.spawn("peer", serve_peer(stream, uid, guid, bridge.clone()))
                    .detach();
            }
            Err(e) => {
                tracing::warn!("D-Bus: accept: {e}");
                rt.sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Writes a connection's outbox until the main loop drops it or a write
/// fails or stalls.
async fn write_outbox(
    conn: Connection,
    outbox: mpmc::Receiver<Message>,
    closer: Closer,
    bridge: Arc<Bridge>,
) {
    struct Done(Arc<Bridge>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.writers.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _done = Done(bridge);
    let Ok(rt) = SharedRuntime::current() else { return };
    let mut batch = Vec::new();
    while let Ok(msg) = outbox.recv().await {
        // Whatever else is queued goes out in the same writes.
        batch.push(msg);
        while batch.len() < 64
            && let Ok(more) = outbox.try_recv()
        {
            batch.push(more);
        }
        match rt.timeout(WRITE_TIMEOUT, conn.send_all(&batch)).await {
            Ok(Ok(())) => batch.clear(),
            _ => break,
        }
    }
    closer.close();
}

/// Tells the main loop of a new connection and starts writing its
/// outbox; returns its id.
fn register(bridge: &Arc<Bridge>, conn: &Connection, closer: Closer, bus: bool) -> ConnId {
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (outbox, out_rx) = mpmc::bounded(NonZeroUsize::new(OUTBOX).unwrap_or(NonZeroUsize::MIN));
    bridge.push(Incoming::Connected {
        conn: id,
        bus,
        outbox,
        closer: closer.clone(),
    });
    bridge.writers.fetch_add(1, Ordering::AcqRel);
    zruntime::spawn(write_outbox(conn.clone(), out_rx, closer, bridge.clone())).detach();
    id
}

/// One peer-to-peer connection on the private socket.
async fn serve_peer(stream: UnixStream, uid: u32, guid: Guid<'static>, bridge: Arc<Bridge>) {
    let handle = stream.try_clone().ok().map(Arc::new);
    let built = Builder::unix_stream(stream)
        .server(guid)
        .p2p()
        .build_message_stream()
        .await;
    let mut messages = match built {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("D-Bus: peer (uid {uid}) failed to connect: {e}");
            return;
        }
    };
    let conn = Connection::from(&messages);
    let id = register(&bridge, &conn, Closer(handle, None), false);
    while let Some(Ok(msg)) = futures_next(&mut messages).await {
        if msg.message_type() != Type::MethodCall {
            continue;
        }
        // Clients such as gdbus and busctl say Hello even peer to peer.
        if msg.header().interface().map(|i| i.as_str()) == Some("org.freedesktop.DBus") {
            answer_bus_daemon(&conn, &msg).await;
            continue;
        }
        bridge.push(Incoming::Call { conn: id, uid, msg });
    }
    bridge.push(Incoming::Disconnected { conn: id });
}

/// What a client expects of `org.freedesktop.DBus` on a peer connection:
/// `Hello` gets a unique name, match rules are accepted (every signal is
/// sent anyway), the rest is an error.
async fn answer_bus_daemon(conn: &Connection, msg: &Message) {
    let header = msg.header();
    let result = match header.member().map(|m| m.as_str()) {
        Some("Hello") => conn.reply(&header, &":1.1").await,
        Some("AddMatch" | "RemoveMatch") => conn.reply(&header, &()).await,
        Some("GetNameOwner") => conn.reply(&header, &":1.0").await,
        _ => {
            conn.reply_dbus_error(
                &header,
                zbus::fdo::Error::UnknownMethod("no message bus here (peer-to-peer connection)".into()),
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!("D-Bus: reply to the bus-daemon call failed: {e}");
    }
}

/// A connection to a message bus: `com.ubuntu.Upstart` is requested there
/// (`DO_NOT_QUEUE`); each caller's uid is asked of the bus once.
async fn serve_bus(address: String, bridge: Arc<Bridge>) {
    let connected = async {
        let conn = Builder::address(address.as_str()).build().await?;
        let stream = zbus::MessageStream::from(&conn);
        // Asked of the bus directly: zbus's own request_name expects its
        // object server, which is not used here (the stream above already
        // receives every call).
        let name = zbus::names::WellKnownName::try_from(upstart_dbus::BUS_NAME)?;
        let reply = zbus::fdo::DBusProxy::new(&conn)
            .await?
            .request_name(name, zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
            .await?;
        if reply != zbus::fdo::RequestNameReply::PrimaryOwner {
            return Err(zbus::Error::Failure(format!(
                "{} is already owned on that bus",
                upstart_dbus::BUS_NAME
            )));
        }
        Ok((conn, stream))
    };
    let (conn, mut messages) = match connected.await {
        Ok(c) => c,
        Err(e) => {
            bridge.push(Incoming::BusFailed {
                address,
                error: e.to_string(),
            });
            return;
        }
    };
    tracing::info!("D-Bus: connected to the bus at {address}");
    let id = register(&bridge, &conn, Closer(None, Some(conn.clone())), true);
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok();
    let mut uids: HashMap<String, u32> = HashMap::new();
    while let Some(Ok(msg)) = futures_next(&mut messages).await {
        if msg.message_type() != Type::MethodCall {
            continue;
        }
        let header = msg.header();
        let Some(sender) = header.sender().map(|s| s.to_string()) else {
            continue;
        };
        let uid = match uids.get(&sender) {
            Some(uid) => *uid,
            None => {
                let asked = match (&dbus, zbus::names::BusName::try_from(sender.as_str())) {
                    (Some(d), Ok(name)) => d.get_connection_unix_user(name).await.ok(),
                    _ => None,
                };
                // An unknown caller counts as nobody.
                let uid = asked.unwrap_or(u32::MAX);
                uids.insert(sender, uid);
                uid
            }
        };
        bridge.push(Incoming::Call { conn: id, uid, msg });
    }
    tracing::warn!("D-Bus: disconnected from the bus at {address}");
    bridge.push(Incoming::Disconnected { conn: id });
}

/// The next item of a stream.
async fn futures_next<S: futures_core_stream::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

/// Binds the private socket at an `unix:abstract=NAME` address.
pub fn bind(address: &str) -> std::io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let name = address.strip_prefix("unix:abstract=").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unsupported address {address}"),
        )
    })?;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

mod futures_core_stream {
    pub use zbus::export::futures_core::Stream;
}
