//! The D-Bus API on the main loop's side (spec §3): each method call the
//! transport hands over is decoded, checked against the caller's uid,
//! answered from the engine's state or turned into an engine request whose
//! reply may come later (a waiting `Start`), and every engine signal
//! becomes a message to every connection. Nothing here grows with the
//! number of jobs except the answers that list them.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use jobconf_parser::{EventExpr, PackedExpr, ProcessKind};
use serde::Serialize;
use upstart_dbus::{
    INSTANCE_INTERFACE, JOB_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH, Object, UPSHOT_INTERFACE,
    instance_path, job_path,
};
use zbus::message::{Flags, Message};
use zbus::zvariant::Type as ZType;
use zbus::{OwnedVariant, Variant};

use super::Daemon;
use crate::control::{Closer, ConnId, Control, Incoming, Outbox};
use crate::engine::{Answer, BusSignal, EngineError, Input, InstanceKey, ReplyTo, Request};
use crate::logging;
use crate::pid1::ShutdownKind;

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
const PEER: &str = "org.freedesktop.DBus.Peer";
const E_UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
const E_UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
const E_UNKNOWN_INTERFACE: &str = "org.freedesktop.DBus.Error.UnknownInterface";
const E_UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";
const E_PROPERTY_READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
const E_NOT_SUPPORTED: &str = "org.freedesktop.DBus.Error.NotSupported";
const E_FAILED: &str = "org.freedesktop.DBus.Error.Failed";

/// A failed call: the error name and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub name: String,
    pub message: String,
}

impl Failure {
    fn new(name: &str, message: impl Into<String>) -> Failure {
        Failure {
            name: name.to_string(),
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(upstart_dbus::INVALID_ARGS, message)
    }

    fn upstart(kind: &str, message: impl Into<String>) -> Failure {
        Failure::new(&format!("{}{kind}", upstart_dbus::ERROR_PREFIX), message)
    }

    fn denied(message: impl Into<String>) -> Failure {
        Failure::upstart("PermissionDenied", message)
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        Failure::new(e.kind.dbus_name(), e.message)
    }
}

/// The outcome of a call: a reply now, or later from the engine.
enum Outcome {
    Reply(Message),
    Later,
}

type CallResult = Result<Outcome, Failure>;

/// What a later engine reply is turned into.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Unit,
    InstancePath,
}

struct Pending {
    conn: ConnId,
    call: Message,
    shape: Shape,
}

struct Peer {
    outbox: Outbox,
    closer: Closer,
    bus: bool,
}

/// The main loop's D-Bus state.
pub(super) struct Bus {
    pub control: Control,
    peers: HashMap<ConnId, Peer>,
    pending: HashMap<ReplyTo, Pending>,
    /// `log_priority` as last set.
    log_priority: String,
    /// The bus we were told of (`NotifyDBusAddress`), kept to reconnect
    /// on SIGUSR1.
    bus_address: Option<String>,
    /// Connected to it, or connecting.
    bus_connected: bool,
    cgroup_manager: Option<String>,
    /// Files given with `EmitEventWithFile`, by the fd number in the
    /// event's `UPSTART_FDS`, held until the event is finished.
    event_fds: HashMap<i32, OwnedFd>,
}

impl Bus {
    pub fn new(control: Control, log_priority: &str) -> Bus {
        Bus {
            control,
            peers: HashMap::new(),
            pending: HashMap::new(),
            log_priority: log_priority.to_string(),
            bus_address: None,
            bus_connected: false,
            cgroup_manager: None,
            event_fds: HashMap::new(),
        }
    }

    /// Drops every connection's outbox and waits (at most `timeout`) until
    /// what they held is written: the last thing before the process ends.
    pub fn flush(mut self, timeout: std::time::Duration) {
        self.peers.clear();
        self.pending.clear();
        self.control.flush(timeout);
    }

    /// The fds that an event's processes inherit (`UPSTART_FDS`).
    pub fn event_fd(&self, env: &[String]) -> Option<i32> {
        let n: i32 = env
            .iter()
            .find_map(|e| e.strip_prefix("UPSTART_FDS="))?
            .parse()
            .ok()?;
        self.event_fds.get(&n).map(|fd| fd.as_raw_fd())
    }

    fn send(&mut self, conn: ConnId, msg: Message) {
        let Some(peer) = self.peers.get(&conn) else { return };
        match peer.outbox.try_send(msg) {
            Ok(()) => {}
            Err(e) => {
                // Closed: the peer is gone and its Disconnected is on its
                // way; Full: it does not read.
                if e.is_full() {
                    tracing::warn!("D-Bus: a client does not read its messages; disconnecting it");
                }
                if let Some(p) = self.peers.remove(&conn) {
                    if p.bus {
                        self.bus_connected = false;
                    }
                    p.closer.close();
                }
            }
        }
    }

    fn broadcast(&mut self, msg: Message) {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.send(conn, msg.clone());
        }
    }
}

/// A method return with `body`.
fn ret<B: Serialize + ZType>(call: &Message, body: &B) -> CallResult {
    Message::method_return(&call.header())
        .build(body)
        .map(Outcome::Reply)
        .map_err(|e| Failure::new(E_FAILED, e.to_string()))
}

fn error_message(call: &Message, f: &Failure) -> Option<Message> {
    Message::error(&call.header(), f.name.as_str())
        .build(&(f.message.as_str(),))
        .ok()
}

/// Decodes a call's arguments, which must have the signature `sig`.
fn args<T: serde::de::DeserializeOwned + ZType>(call: &Message, sig: &str) -> Result<T, Failure> {
    let body = call.body();
    let got = body.signature().to_string();
    // zbus spells a body of several values as a structure.
    let inner = got
        .strip_prefix('(')
        .and_then(|g| g.strip_suffix(')'))
        .unwrap_or(&got);
    if inner != sig && got != sig {
        return Err(Failure::invalid(format!(
            "Invalid arguments: expected signature '{sig}', got '{inner}'"
        )));
    }
    body.deserialize::<T>()
        .map_err(|e| Failure::invalid(format!("Invalid arguments: {e}")))
}

/// `start on`/`stop on` as Upstart's post-order list: `[EVENT, ARG…]` for
/// a match, `["/AND"]`, `["/OR"]` for the operators.
pub fn rpn(expr: Option<&EventExpr>) -> Vec<Vec<String>> {
    fn walk(e: &EventExpr, out: &mut Vec<Vec<String>>) {
        match e {
            EventExpr::Match(m) => {
                let mut v = vec![m.name.clone()];
                v.extend(m.args.iter().map(|a| a.to_token()));
                out.push(v);
            }
            EventExpr::And(l, r) => {
                walk(l, out);
                walk(r, out);
                out.push(vec!["/AND".into()]);
            }
            EventExpr::Or(l, r) => {
                walk(l, out);
                walk(r, out);
                out.push(vec!["/OR".into()]);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(e) = expr {
        walk(e, &mut out);
    }
    out
}

/// Upstart's `log_priority` names and the daemon's filter for each.
fn log_level(name: &str) -> Option<tracing::level_filters::LevelFilter> {
    use tracing::level_filters::LevelFilter;
    Some(match name {
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "message" | "warn" => LevelFilter::WARN,
        "error" | "fatal" => LevelFilter::ERROR,
        _ => return None,
    })
}

/// Methods anyone may call on a bus (`dbus/Upstart.conf`).
fn is_read_only(interface: &str, member: &str) -> bool {
    matches!(
        (interface, member),
        (INTROSPECTABLE, _)
            | (PEER, _)
            | (PROPERTIES, "Get" | "GetAll")
            | (MANAGER_INTERFACE, "GetJobByName" | "GetAllJobs")
            | (
                JOB_INTERFACE,
                "GetInstance" | "GetInstanceByName" | "GetAllInstances"
            )
    )
}

impl Daemon {
    /// Handles what the transport queued.
    pub(super) fn on_bus_input(&mut self) {
        let Some(bus) = self.bus.as_ref() else { return };
        let incoming = bus.control.bridge.take();
        for inc in incoming {
            match inc {
                Incoming::Connected {
                    conn,
                    bus: is_bus,
                    outbox,
                    closer,
                } => {
                    if let Some(b) = self.bus.as_mut() {
                        b.peers.insert(
                            conn,
                            Peer {
                                outbox,
                                closer,
                                bus: is_bus,
                            },
                        );
                    }
                }
                Incoming::Disconnected { conn } => {
                    if let Some(b) = self.bus.as_mut() {
                        if b.peers.remove(&conn).is_some_and(|p| p.bus) {
                            b.bus_connected = false;
                        }
                        b.pending.retain(|_, p| p.conn != conn);
                    }
                }
                Incoming::BusFailed { address, error } => {
                    tracing::warn!("D-Bus: unable to use the bus at {address}: {error}");
                    if let Some(b) = self.bus.as_mut()
                        && b.bus_address.as_deref() == Some(address.as_str())
                    {
                        b.bus_connected = false;
                    }
                }
                Incoming::Call { conn, uid, msg } => self.on_call(conn, uid, msg),
            }
        }
    }

    fn on_call(&mut self, conn: ConnId, uid: u32, msg: Message) {
        let no_reply = msg.primary_header().flags().contains(Flags::NO_REPLY_EXPECTED);
        // A bug met while handling a call fails that call, not the daemon
        // (the panic hook has logged it); a reply it left pending is
        // dropped.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.route(conn, uid, &msg, no_reply)
        }))
        .unwrap_or_else(|_| {
            if let Some(b) = self.bus.as_mut() {
                let serial = msg.primary_header().serial_num();
                b.pending
                    .retain(|_, p| !(p.conn == conn && p.call.primary_header().serial_num() == serial));
            }
            Err(Failure::new(
                E_FAILED,
                "Internal error in init while handling this call (logged); init goes on",
            ))
        });
        let reply = match outcome {
            Ok(Outcome::Later) => return,
            Ok(Outcome::Reply(m)) => Some(m),
            Err(f) => error_message(&msg, &f),
        };
        if no_reply {
            return;
        }
        if let (Some(m), Some(bus)) = (reply, self.bus.as_mut()) {
            bus.send(conn, m);
        }
    }

    fn route(&mut self, conn: ConnId, uid: u32, call: &Message, no_reply: bool) -> CallResult {
        let header = call.header();
        let path = header.path().map(|p| p.as_str().to_string()).unwrap_or_default();
        let member = header
            .member()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let object = upstart_dbus::parse_path(&path);
        let interface = match header.interface() {
            Some(i) => i.as_str().to_string(),
            // A call without an interface names a member of the object's
            // own interface.
            None => match object {
                Some(Object::Manager) => MANAGER_INTERFACE.to_string(),
                Some(Object::Job(_)) => JOB_INTERFACE.to_string(),
                Some(Object::Instance(..)) => INSTANCE_INTERFACE.to_string(),
                None => INTROSPECTABLE.to_string(),
            },
        };
        drop(header);
        let own = self.own_uid;
        let on_bus = self
            .bus
            .as_ref()
            .and_then(|b| b.peers.get(&conn))
            .is_some_and(|p| p.bus);
        let trusted = uid == 0 || uid == own;
        if !trusted && (!on_bus || self.opts.user || !is_read_only(&interface, &member)) {
            return Err(match &object {
                Some(Object::Job(j)) | Some(Object::Instance(j, _)) => {
                    Failure::denied(format!("You do not have permission to modify job: {j}"))
                }
                _ => Failure::denied("You do not have permission to control init"),
            });
        }
        if interface == INTROSPECTABLE && member == "Introspect" {
            return self.introspect(call, &path, object.as_ref());
        }
        if interface == PEER {
            return match member.as_str() {
                "Ping" => ret(call, &()),
                "GetMachineId" => {
                    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
                    ret(call, &id.trim())
                }
                _ => Err(unknown_method(&interface, &member, &path)),
            };
        }
        let req = |wait: bool, d: &mut Daemon, shape: Shape| -> Option<Request> {
            if no_reply && !wait {
                return None;
            }
            let reply = d.next_reply;
            d.next_reply += 1;
            if let Some(b) = d.bus.as_mut() {
                b.pending.insert(
                    reply,
                    Pending {
                        conn,
                        call: call.clone(),
                        shape,
                    },
                );
            }
            Some(Request { reply, wait })
        };
        match object {
            None => Err(unknown_object(&path)),
            Some(Object::Manager) => self.manager_call(call, &interface, &member, req),
            Some(Object::Job(job)) => {
                if !self.engine.classes().contains_key(&job) {
                    return Err(unknown_object(&path));
                }
                self.job_call(call, &job, &interface, &member, req)
            }
            Some(Object::Instance(job, inst)) => {
                let key = InstanceKey::new(job, inst);
                if self.engine.instance(&key).is_none() {
                    return Err(unknown_object(&path));
                }
                self.instance_call(call, &key, &interface, &member, req)
            }
        }
    }

    fn manager_call(
        &mut self,
        call: &Message,
        interface: &str,
        member: &str,
        req: impl Fn(bool, &mut Daemon, Shape) -> Option<Request>,
    ) -> CallResult {
        if interface == UPSHOT_INTERFACE {
            return self.upshot_call(call, member);
        }
        if interface == PROPERTIES {
            return self.properties(call, member, MANAGER_INTERFACE, |d, name| {
                d.manager_property(name)
            });
        }
        if interface != MANAGER_INTERFACE {
            return Err(unknown_interface(interface, member, MANAGER_PATH));
        }
        match member {
            "ReloadConfiguration" => {
                args::<()>(call, "")?;
                tracing::info!("reloading configuration");
                for change in self.conf.rescan() {
                    self.conf_change(change);
                }
                ret(call, &())
            }
            "GetJobByName" => {
                let name: String = args(call, "s")?;
                if name.is_empty() {
                    return Err(Failure::invalid("Name may not be empty string"));
                }
                match self.engine.classes().get(&name) {
                    Some(c) if !c.removed => ret(call, &object_path(&job_path(&name))?),
                    _ => Err(Failure::upstart("UnknownJob", format!("Unknown job: {name}"))),
                }
            }
            "GetAllJobs" => {
                args::<()>(call, "")?;
                let paths = self
                    .engine
                    .classes()
                    .iter()
                    .filter(|(_, c)| !c.removed)
                    .map(|(n, _)| object_path(&job_path(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                ret(call, &paths)
            }
            "GetState" => {
                args::<()>(call, "")?;
                ret(call, &self.engine.state_json())
            }
            "Restart" => Err(Failure::new(
                E_NOT_SUPPORTED,
                "Stateful re-exec is not implemented yet: restart the daemon instead",
            )),
            "GetEnv" => {
                let (details, name): (Vec<String>, String) = args(call, "ass")?;
                let env = self.env_table(&details)?;
                match env_lookup(&env, &name) {
                    Some(v) => ret(call, &v),
                    None => Err(Failure::invalid(format!("No such variable: {name}"))),
                }
            }
            "ListEnv" => {
                let details: Vec<String> = args(call, "as")?;
                ret(call, &self.env_table(&details)?)
            }
            "SetEnv" => {
                let (details, var, replace): (Vec<String>, String, bool) = args(call, "assb")?;
                self.env_change(&details, EnvChange::Set(vec![var], replace))?;
                ret(call, &())
            }
            "SetEnvList" => {
                let (details, vars, replace): (Vec<String>, Vec<String>, bool) = args(call, "asasb")?;
                self.env_change(&details, EnvChange::Set(vars, replace))?;
                ret(call, &())
            }
            "UnsetEnv" => {
                let (details, name): (Vec<String>, String) = args(call, "ass")?;
                self.env_change(&details, EnvChange::Unset(vec![name]))?;
                ret(call, &())
            }
            "UnsetEnvList" => {
                let (details, names): (Vec<String>, Vec<String>) = args(call, "asas")?;
                self.env_change(&details, EnvChange::Unset(names))?;
                ret(call, &())
            }
            "ResetEnv" => {
                let details: Vec<String> = args(call, "as")?;
                self.env_change(&details, EnvChange::Reset)?;
                ret(call, &())
            }
            "EmitEvent" => {
                let (name, env, wait): (String, Vec<String>, bool) = args(call, "sasb")?;
                let by = req(wait, self, Shape::Unit);
                self.feed(Input::Emit { name, env, by });
                Ok(Outcome::Later)
            }
            "EmitEventWithFile" => {
                let (name, mut env, wait, fd): (String, Vec<String>, bool, zbus::OwnedFd) =
                    args(call, "sasbh")?;
                if env.iter().any(|e| e.starts_with("UPSTART_FDS=")) {
                    return Err(Failure::invalid("UPSTART_FDS is set by init, not by the caller"));
                }
                // A descriptor of our own without close-on-exec, kept
                // until the event is finished; jobs the event starts get
                // it (spec §3.2).
                // Numbered high, clear of the descriptors a child sets up.
                let own = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100))
                    .map(|n| {
                        // SAFETY: fcntl just returned this new descriptor.
                        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) }
                    })
                    .map_err(|e| Failure::new(E_FAILED, format!("unable to take the file: {e}")))?;
                let n = own.as_raw_fd();
                env.push(format!("UPSTART_FDS={n}"));
                if let Some(b) = self.bus.as_mut() {
                    b.event_fds.insert(n, own);
                }
                let by = req(wait, self, Shape::Unit);
                self.feed(Input::Emit { name, env, by });
                Ok(Outcome::Later)
            }
            "NotifyDiskWriteable" => {
                args::<()>(call, "")?;
                if let Some(logs) = self.logs.as_mut() {
                    logs.disk_writeable();
                }
                ret(call, &())
            }
            "NotifyDBusAddress" => {
                let address: String = args(call, "s")?;
                if !self.opts.user {
                    return Err(Failure::denied("Only a session init connects to a session bus"));
                }
                if address.is_empty() {
                    return Err(Failure::invalid("Address may not be empty string"));
                }
                if let Some(b) = self.bus.as_mut()
                    && !b.bus_connected
                {
                    b.bus_address = Some(address);
                    self.reconnect_bus();
                }
                ret(call, &())
            }
            "NotifyCGroupManagerAddress" => {
                let address: String = args(call, "s")?;
                tracing::info!(
                    "cgroup manager at {address} noted; upshot manages cgroups itself and does not use it"
                );
                if let Some(b) = self.bus.as_mut() {
                    b.cgroup_manager = Some(address);
                }
                ret(call, &())
            }
            "EndSession" => {
                args::<()>(call, "")?;
                if self.opts.user {
                    self.begin_shutdown("logout");
                }
                ret(call, &())
            }
            _ => Err(unknown_method(interface, member, MANAGER_PATH)),
        }
    }

    /// upshot's own interface on the manager object (not Upstart's).
    fn upshot_call(&mut self, call: &Message, member: &str) -> CallResult {
        match member {
            "Shutdown" => {
                let how: String = args(call, "s")?;
                let Some(kind) = ShutdownKind::parse(&how) else {
                    return Err(Failure::invalid(format!(
                        "Unknown shutdown type: {how} (poweroff, reboot or halt)"
                    )));
                };
                if self.opts.system.is_none() {
                    return Err(Failure::new(
                        E_NOT_SUPPORTED,
                        "A session init does not shut the system down (EndSession ends the session)",
                    ));
                }
                self.begin_system_shutdown(kind);
                ret(call, &())
            }
            _ => Err(unknown_method(UPSHOT_INTERFACE, member, MANAGER_PATH)),
        }
    }

    fn manager_property(&self, name: &str) -> Option<Variant<'static>> {
        let b = self.bus.as_ref()?;
        match name {
            "version" => Some(Variant::from(version())),
            "log_priority" => Some(Variant::from(b.log_priority.clone())),
            _ => None,
        }
    }

    fn job_call(
        &mut self,
        call: &Message,
        job: &str,
        interface: &str,
        member: &str,
        req: impl Fn(bool, &mut Daemon, Shape) -> Option<Request>,
    ) -> CallResult {
        let path = job_path(job);
        if interface == PROPERTIES {
            return self.properties(call, member, JOB_INTERFACE, |d, name| d.job_property(job, name));
        }
        if interface != JOB_INTERFACE {
            return Err(unknown_interface(interface, member, &path));
        }
        let class = &self.engine.classes()[job];
        match member {
            "GetInstance" => {
                let env: Vec<String> = args(call, "as")?;
                let name = self.engine.instance_name(job, &env)?;
                if class.instances.contains_key(&name) {
                    ret(call, &object_path(&instance_path(job, &name))?)
                } else {
                    Err(Failure::upstart(
                        "UnknownInstance",
                        format!("Unknown instance: {name}"),
                    ))
                }
            }
            "GetInstanceByName" => {
                let name: String = args(call, "s")?;
                if class.instances.contains_key(&name) {
                    ret(call, &object_path(&instance_path(job, &name))?)
                } else {
                    Err(Failure::upstart(
                        "UnknownInstance",
                        format!("Unknown instance: {name}"),
                    ))
                }
            }
            "GetAllInstances" => {
                args::<()>(call, "")?;
                let paths = class
                    .instances
                    .keys()
                    .map(|i| object_path(&instance_path(job, i)))
                    .collect::<Result<Vec<_>, _>>()?;
                ret(call, &paths)
            }
            "Start" | "Stop" | "Restart" => {
                let (env, wait): (Vec<String>, bool) = args(call, "asb")?;
                let job = job.to_string();
                let input = match member {
                    "Start" => Input::Start {
                        job,
                        env,
                        by: req(wait, self, Shape::InstancePath),
                    },
                    "Stop" => Input::Stop {
                        job,
                        env,
                        by: req(wait, self, Shape::Unit),
                    },
                    _ => Input::Restart {
                        job,
                        env,
                        by: req(wait, self, Shape::InstancePath),
                    },
                };
                self.feed(input);
                Ok(Outcome::Later)
            }
            _ => Err(unknown_method(interface, member, &path)),
        }
    }

    fn job_property(&self, job: &str, name: &str) -> Option<Variant<'static>> {
        let conf = &self.engine.classes().get(job)?.conf;
        let text = |s: Option<&str>| Variant::from(s.unwrap_or_default().to_string());
        Some(match name {
            "name" => Variant::from(job.to_string()),
            "description" => text(conf.description()),
            "author" => text(conf.author()),
            "version" => text(conf.version()),
            "usage" => text(conf.usage()),
            "start_on" => Variant::from(rpn(conf.start_on().map(PackedExpr::unpack).as_ref())),
            "stop_on" => Variant::from(rpn(conf.stop_on().map(PackedExpr::unpack).as_ref())),
            "emits" => Variant::from(conf.emits().map(String::from).collect::<Vec<_>>()),
            _ => return None,
        })
    }

    fn instance_call(
        &mut self,
        call: &Message,
        key: &InstanceKey,
        interface: &str,
        member: &str,
        req: impl Fn(bool, &mut Daemon, Shape) -> Option<Request>,
    ) -> CallResult {
        let path = instance_path(&key.job, &key.instance);
        if interface == PROPERTIES {
            return self.properties(call, member, INSTANCE_INTERFACE, |d, name| {
                d.instance_property(key, name)
            });
        }
        if interface != INSTANCE_INTERFACE {
            return Err(unknown_interface(interface, member, &path));
        }
        let key = key.clone();
        let input = match member {
            "Start" | "Stop" | "Restart" => {
                let wait: bool = args(call, "b")?;
                let by = req(wait, self, Shape::Unit);
                match member {
                    "Start" => Input::InstanceStart { key, by },
                    "Stop" => Input::InstanceStop { key, by },
                    _ => Input::InstanceRestart { key, by },
                }
            }
            "Reload" => {
                args::<()>(call, "")?;
                let by = req(false, self, Shape::Unit);
                Input::Reload { key, by }
            }
            _ => return Err(unknown_method(interface, member, &path)),
        };
        self.feed(input);
        Ok(Outcome::Later)
    }

    fn instance_property(&self, key: &InstanceKey, name: &str) -> Option<Variant<'static>> {
        let inst = self.engine.instance(key)?;
        Some(match name {
            "name" => Variant::from(key.instance.clone()),
            "goal" => Variant::from(inst.goal.name().to_string()),
            "state" => Variant::from(inst.state.name().to_string()),
            "processes" => {
                let procs: Vec<(String, i32)> = PROCESS_ORDER
                    .iter()
                    .filter_map(|k| inst.pid(*k).map(|pid| (k.name().to_string(), pid)))
                    .collect();
                Variant::from(procs)
            }
            _ => return None,
        })
    }

    /// `org.freedesktop.DBus.Properties` on an object whose interface is
    /// `own`.
    fn properties(
        &mut self,
        call: &Message,
        member: &str,
        own: &str,
        get: impl Fn(&Daemon, &str) -> Option<Variant<'static>>,
    ) -> CallResult {
        let names: &[&str] = match own {
            MANAGER_INTERFACE => &["version", "log_priority"],
            JOB_INTERFACE => &[
                "name",
                "description",
                "author",
                "version",
                "usage",
                "start_on",
                "stop_on",
                "emits",
            ],
            _ => &["name", "goal", "state", "processes"],
        };
        match member {
            "Get" => {
                let (iface, name): (String, String) = args(call, "ss")?;
                if iface != own && !iface.is_empty() {
                    return Err(Failure::new(
                        E_UNKNOWN_INTERFACE,
                        format!("No such interface '{iface}'"),
                    ));
                }
                match get(self, &name) {
                    Some(v) => ret(call, &(v,)),
                    None => Err(Failure::new(
                        E_UNKNOWN_PROPERTY,
                        format!("No such property '{name}'"),
                    )),
                }
            }
            "GetAll" => {
                let iface: String = args(call, "s")?;
                let mut all: HashMap<String, OwnedVariant> = HashMap::new();
                if iface == own || iface.is_empty() {
                    for name in names {
                        if let Some(v) = get(self, name)
                            && let Ok(v) = v.try_to_owned()
                        {
                            all.insert(name.to_string(), v);
                        }
                    }
                }
                ret(call, &all)
            }
            "Set" => {
                let (iface, name, value): (String, String, OwnedVariant) = args(call, "ssv")?;
                if own != MANAGER_INTERFACE || (iface != own && !iface.is_empty()) || name != "log_priority" {
                    return Err(if names.contains(&name.as_str()) {
                        Failure::new(E_PROPERTY_READ_ONLY, format!("Property '{name}' is read-only"))
                    } else {
                        Failure::new(E_UNKNOWN_PROPERTY, format!("No such property '{name}'"))
                    });
                }
                let text: String = String::try_from(value)
                    .map_err(|_| Failure::invalid("The log priority given was not recognised"))?;
                let Some(level) = log_level(&text) else {
                    return Err(Failure::invalid("The log priority given was not recognised"));
                };
                logging::set_level(level);
                if let Some(b) = self.bus.as_mut() {
                    b.log_priority = text;
                }
                ret(call, &())
            }
            _ => Err(unknown_method(PROPERTIES, member, "")),
        }
    }

    fn introspect(&self, call: &Message, path: &str, object: Option<&Object>) -> CallResult {
        args::<()>(call, "")?;
        let mut xml = String::from(
            "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
        );
        xml.push_str(STANDARD_INTERFACES);
        let mut children: Vec<String> = Vec::new();
        match object {
            Some(Object::Manager) => {
                xml.push_str(MANAGER_XML);
                xml.push_str(UPSHOT_XML);
                children.push("jobs".into());
            }
            Some(Object::Job(job)) => {
                let Some(class) = self.engine.classes().get(job) else {
                    return Err(unknown_object(path));
                };
                xml.push_str(JOB_XML);
                children.extend(class.instances.keys().map(|i| upstart_dbus::escape(i)));
            }
            Some(Object::Instance(..)) => xml.push_str(INSTANCE_XML),
            None => {
                let p = path.trim_end_matches('/');
                if p == upstart_dbus::JOBS_PATH {
                    children.extend(self.engine.classes().keys().map(upstart_dbus::escape));
                } else if let Some(rest) = MANAGER_PATH.strip_prefix(p).and_then(|r| r.strip_prefix('/'))
                    && let Some(first) = rest.split('/').next()
                {
                    children.push(first.to_string());
                } else if p.is_empty() {
                    children.push("com".into());
                } else {
                    return Err(unknown_object(path));
                }
            }
        }
        for c in children {
            xml.push_str(&format!("  <node name=\"{c}\"/>\n"));
        }
        xml.push_str("</node>\n");
        ret(call, &xml)
    }

    /// A system init's message bus: the system bus (`DBUS_SYSTEM_BUS_ADDRESS`
    /// or `/run/dbus/system_bus_socket`), connected to now if its socket is
    /// there, and again on SIGUSR1 (what the dbus job sends once the bus
    /// runs, as for Upstart).
    pub(super) fn use_system_bus(&mut self) {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|_| "unix:path=/run/dbus/system_bus_socket".to_string());
        let present = match address.strip_prefix("unix:path=") {
            Some(path) => std::path::Path::new(path.split(',').next().unwrap_or(path)).exists(),
            None => true,
        };
        let Some(b) = self.bus.as_mut() else { return };
        b.bus_address = Some(address);
        if present {
            self.reconnect_bus();
        }
    }

    /// Connects to the bus we were told of, unless connected (SIGUSR1, as
    /// PID 1 does when the system bus comes up).
    pub(super) fn reconnect_bus(&mut self) {
        let Some(b) = self.bus.as_mut() else { return };
        match (&b.bus_address, b.bus_connected) {
            (Some(address), false) => {
                tracing::info!("D-Bus: connecting to the bus at {address}");
                b.bus_connected = true;
                b.control.connect_bus(address);
            }
            (Some(_), true) => tracing::debug!("D-Bus: already connected to the bus"),
            (None, _) => tracing::debug!("D-Bus: no bus address known"),
        }
    }

    /// An engine reply to a D-Bus request.
    pub(super) fn bus_reply(&mut self, to: ReplyTo, result: Result<Answer, EngineError>) {
        let Some(bus) = self.bus.as_mut() else { return };
        let Some(p) = bus.pending.remove(&to) else { return };
        let msg = match result {
            Ok(answer) => match (p.shape, answer) {
                (Shape::InstancePath, Answer::Instance(key)) => {
                    object_path(&instance_path(&key.job, &key.instance)).and_then(|o| ret(&p.call, &o))
                }
                _ => ret(&p.call, &()),
            },
            Err(e) => Err(Failure::from(e)),
        };
        let msg = match msg {
            Ok(Outcome::Reply(m)) => Some(m),
            Ok(Outcome::Later) => None,
            Err(f) => error_message(&p.call, &f),
        };
        if p.call.primary_header().flags().contains(Flags::NO_REPLY_EXPECTED) {
            return;
        }
        if let Some(m) = msg {
            bus.send(p.conn, m);
        }
    }

    /// An engine signal, to every connection.
    pub(super) fn bus_broadcast(&mut self, s: &BusSignal) {
        let Some(bus) = self.bus.as_mut() else { return };
        if let BusSignal::EventEmitted { env, .. } = s
            && let Some(n) = env
                .iter()
                .find_map(|e| e.strip_prefix("UPSTART_FDS="))
                .and_then(|n| n.parse::<i32>().ok())
        {
            bus.event_fds.remove(&n);
        }
        if bus.peers.is_empty() {
            return;
        }
        let msg = match s {
            BusSignal::JobAdded(job) => {
                path_signal(MANAGER_PATH, MANAGER_INTERFACE, "JobAdded", &job_path(job))
            }
            BusSignal::JobRemoved(job) => {
                path_signal(MANAGER_PATH, MANAGER_INTERFACE, "JobRemoved", &job_path(job))
            }
            BusSignal::InstanceAdded(k) => path_signal(
                &job_path(&k.job),
                JOB_INTERFACE,
                "InstanceAdded",
                &instance_path(&k.job, &k.instance),
            ),
            BusSignal::InstanceRemoved(k) => path_signal(
                &job_path(&k.job),
                JOB_INTERFACE,
                "InstanceRemoved",
                &instance_path(&k.job, &k.instance),
            ),
            BusSignal::GoalChanged(k, goal) => signal(
                &instance_path(&k.job, &k.instance),
                INSTANCE_INTERFACE,
                "GoalChanged",
                &goal.name(),
            ),
            BusSignal::StateChanged(k, state) => signal(
                &instance_path(&k.job, &k.instance),
                INSTANCE_INTERFACE,
                "StateChanged",
                &state.name(),
            ),
            BusSignal::Failed(k, status) => signal(
                &instance_path(&k.job, &k.instance),
                INSTANCE_INTERFACE,
                "Failed",
                status,
            ),
            BusSignal::EventEmitted { name, env } => {
                signal(MANAGER_PATH, MANAGER_INTERFACE, "EventEmitted", &(name, env))
            }
        };
        if let Some(m) = msg {
            bus.broadcast(m);
        }
    }

    /// The environment table that `job_details` names: `[]` the global
    /// one, `[JOB, INSTANCE]` an instance's.
    fn env_target(&self, details: &[String]) -> Result<Option<InstanceKey>, Failure> {
        match details {
            [] => Ok(None),
            [job, inst] => {
                if !self.engine.classes().contains_key(job) {
                    return Err(Failure::upstart("UnknownJob", format!("Unknown job: {job}")));
                }
                let key = InstanceKey::new(job.clone(), inst.clone());
                if self.engine.instance(&key).is_none() {
                    return Err(Failure::upstart(
                        "UnknownJobInstance",
                        format!("Unknown instance: {inst} of job {job}"),
                    ));
                }
                Ok(Some(key))
            }
            _ => Err(Failure::invalid("job_details must be empty or [JOB, INSTANCE]")),
        }
    }

    fn env_table(&self, details: &[String]) -> Result<Vec<String>, Failure> {
        let target = self.env_target(details)?;
        Ok(self.engine.env_table(target.as_ref()).to_vec())
    }

    fn env_change(&mut self, details: &[String], change: EnvChange) -> Result<(), Failure> {
        let target = self.env_target(details)?;
        if target.is_none() && !self.opts.user {
            return Err(Failure::denied("Not permissible to modify PID 1 job environment"));
        }
        match change {
            EnvChange::Set(vars, replace) => {
                if vars.iter().any(|v| v.is_empty() || v.starts_with('=')) {
                    return Err(Failure::invalid("Variable may not be empty string"));
                }
                for var in vars {
                    self.engine.set_env(target.as_ref(), &var, replace);
                }
            }
            EnvChange::Unset(names) => {
                for name in &names {
                    if !self
                        .engine
                        .env_table(target.as_ref())
                        .iter()
                        .any(|e| env_key(e) == name)
                    {
                        return Err(Failure::invalid(format!("No such variable: {name}")));
                    }
                }
                for name in &names {
                    self.engine.unset_env(target.as_ref(), name);
                }
            }
            EnvChange::Reset => {
                let defaults = self.opts.global_env.clone();
                self.engine.reset_env(target.as_ref(), defaults);
            }
        }
        Ok(())
    }
}

enum EnvChange {
    Set(Vec<String>, bool),
    Unset(Vec<String>),
    Reset,
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

fn env_lookup(env: &[String], name: &str) -> Option<String> {
    env.iter()
        .find(|e| env_key(e) == name)
        .map(|e| e.split_once('=').map_or("", |(_, v)| v).to_string())
}

/// The order of `processes` (spec §3.4).
const PROCESS_ORDER: [ProcessKind; 5] = [
    ProcessKind::Main,
    ProcessKind::PreStart,
    ProcessKind::PostStart,
    ProcessKind::PreStop,
    ProcessKind::PostStop,
];

/// `version`: `init (upshot X.Y.Z)`.
pub fn version() -> String {
    format!("init (upshot {})", env!("CARGO_PKG_VERSION"))
}

fn object_path(p: &str) -> Result<zbus::ObjectPath<'static>, Failure> {
    zbus::ObjectPath::try_from(p.to_string()).map_err(|e| Failure::new(E_FAILED, e.to_string()))
}

fn signal<B: Serialize + ZType>(path: &str, interface: &str, member: &str, body: &B) -> Option<Message> {
    Message::signal(path, interface, member).build(body).ok()
}

fn path_signal(path: &str, interface: &str, member: &str, object: &str) -> Option<Message> {
    signal(path, interface, member, &object_path(object).ok()?)
}

fn unknown_object(path: &str) -> Failure {
    Failure::new(E_UNKNOWN_OBJECT, format!("No such object path '{path}'"))
}

fn unknown_method(interface: &str, member: &str, path: &str) -> Failure {
    Failure::new(
        E_UNKNOWN_METHOD,
        format!("No such method '{member}' in interface '{interface}' at object path '{path}'"),
    )
}

fn unknown_interface(interface: &str, member: &str, path: &str) -> Failure {
    Failure::new(
        E_UNKNOWN_METHOD,
        format!("No such interface '{interface}' (method '{member}') at object path '{path}'"),
    )
}

const STANDARD_INTERFACES: &str = r#"  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="data" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg name="machine_uuid" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="out"/>
    </method>
    <method name="Set">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="in"/>
    </method>
    <method name="GetAll">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="props" type="a{sv}" direction="out"/>
    </method>
  </interface>
"#;

const MANAGER_XML: &str = r#"  <interface name="com.ubuntu.Upstart0_6">
    <method name="ReloadConfiguration"/>
    <method name="GetJobByName">
      <arg name="name" type="s" direction="in"/>
      <arg name="job" type="o" direction="out"/>
    </method>
    <method name="GetAllJobs">
      <arg name="jobs" type="ao" direction="out"/>
    </method>
    <method name="GetState">
      <arg name="state" type="s" direction="out"/>
    </method>
    <method name="Restart">
      <annotation name="org.freedesktop.DBus.Deprecated" value="true"/>
    </method>
    <method name="GetEnv">
      <arg name="job_details" type="as" direction="in"/>
      <arg name="name" type="s" direction="in"/>
      <arg name="value" type="s" direction="out"/>
    </method>
    <method name="SetEnv">
      <arg name="job_details" type="as" direction="in"/>
      <arg name="var" type="s" direction="in"/>
      <arg name="replace" type="b" direction="in"/>
    </method>
    <method name="SetEnvList">
      <arg name="job_details" type="as" direction="in"/>
      <arg name="vars" type="as" direction="in"/>
      <arg name="replace" type="b" direction="in"/>
    </method>
    <method name="UnsetEnv">
      <arg name="job_details" type="as" direction="in"/>
      <arg name="name" type="s" direction="in"/>
    </method>
    <method name="UnsetEnvList">
      <arg name="job_details" type="as" direction="in"/>
      <arg name="names" type="as" direction="in"/>
    </method>
    <method name="ListEnv">
      <arg name="job_details" type="as" direction="in"/>
      <arg name="env" type="as" direction="out"/>
    </method>
    <method name="ResetEnv">
      <arg name="job_details" type="as" direction="in"/>
    </method>
    <method name="EmitEvent">
      <arg name="name" type="s" direction="in"/>
      <arg name="env" type="as" direction="in"/>
      <arg name="wait" type="b" direction="in"/>
    </method>
    <method name="EmitEventWithFile">
      <arg name="name" type="s" direction="in"/>
      <arg name="env" type="as" direction="in"/>
      <arg name="wait" type="b" direction="in"/>
      <arg name="file" type="h" direction="in"/>
    </method>
    <method name="NotifyDiskWriteable"/>
    <method name="NotifyDBusAddress">
      <arg name="address" type="s" direction="in"/>
    </method>
    <method name="NotifyCGroupManagerAddress">
      <arg name="address" type="s" direction="in"/>
    </method>
    <method name="EndSession"/>
    <signal name="JobAdded">
      <arg name="job" type="o"/>
    </signal>
    <signal name="JobRemoved">
      <arg name="job" type="o"/>
    </signal>
    <signal name="EventEmitted">
      <arg name="name" type="s"/>
      <arg name="env" type="as"/>
    </signal>
    <signal name="Restarted"/>
    <property name="version" type="s" access="read"/>
    <property name="log_priority" type="s" access="readwrite"/>
  </interface>
"#;

const UPSHOT_XML: &str = r#"  <interface name="io.upshot.Init1">
    <method name="Shutdown">
      <arg name="how" type="s" direction="in"/>
    </method>
  </interface>
"#;

const JOB_XML: &str = r#"  <interface name="com.ubuntu.Upstart0_6.Job">
    <method name="GetInstance">
      <arg name="env" type="as" direction="in"/>
      <arg name="instance" type="o" direction="out"/>
    </method>
    <method name="GetInstanceByName">
      <arg name="name" type="s" direction="in"/>
      <arg name="instance" type="o" direction="out"/>
    </method>
    <method name="GetAllInstances">
      <arg name="instances" type="ao" direction="out"/>
    </method>
    <method name="Start">
      <arg name="env" type="as" direction="in"/>
      <arg name="wait" type="b" direction="in"/>
      <arg name="instance" type="o" direction="out"/>
    </method>
    <method name="Stop">
      <arg name="env" type="as" direction="in"/>
      <arg name="wait" type="b" direction="in"/>
    </method>
    <method name="Restart">
      <arg name="env" type="as" direction="in"/>
      <arg name="wait" type="b" direction="in"/>
      <arg name="instance" type="o" direction="out"/>
    </method>
    <signal name="InstanceAdded">
      <arg name="instance" type="o"/>
    </signal>
    <signal name="InstanceRemoved">
      <arg name="instance" type="o"/>
    </signal>
    <property name="name" type="s" access="read"/>
    <property name="description" type="s" access="read"/>
    <property name="author" type="s" access="read"/>
    <property name="version" type="s" access="read"/>
    <property name="usage" type="s" access="read"/>
    <property name="start_on" type="aas" access="read"/>
    <property name="stop_on" type="aas" access="read"/>
    <property name="emits" type="as" access="read"/>
  </interface>
"#;

const INSTANCE_XML: &str = r#"  <interface name="com.ubuntu.Upstart0_6.Instance">
    <method name="Start">
      <arg name="wait" type="b" direction="in"/>
    </method>
    <method name="Stop">
      <arg name="wait" type="b" direction="in"/>
    </method>
    <method name="Restart">
      <arg name="wait" type="b" direction="in"/>
    </method>
    <method name="Reload"/>
    <signal name="GoalChanged">
      <arg name="goal" type="s"/>
    </signal>
    <signal name="StateChanged">
      <arg name="state" type="s"/>
    </signal>
    <signal name="Failed">
      <arg name="status" type="i"/>
    </signal>
    <property name="name" type="s" access="read"/>
    <property name="goal" type="s" access="read"/>
    <property name="state" type="s" access="read"/>
    <property name="processes" type="a(si)" access="read"/>
  </interface>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpn_is_post_order() {
        let conf = jobconf_parser::parse_job(b"start on (a and b X=1) or c\n").unwrap();
        assert_eq!(
            rpn(conf.start_on().map(PackedExpr::unpack).as_ref()),
            vec![
                vec!["a".to_string()],
                vec!["b".to_string(), "X=1".to_string()],
                vec!["/AND".to_string()],
                vec!["c".to_string()],
                vec!["/OR".to_string()],
            ]
        );
        assert!(rpn(None).is_empty());
    }

    #[test]
    fn log_priorities() {
        for name in ["debug", "info", "message", "warn", "error", "fatal"] {
            assert!(log_level(name).is_some(), "{name}");
        }
        assert!(log_level("loud").is_none());
    }

    #[test]
    fn read_only_methods_are_upstarts() {
        assert!(is_read_only(MANAGER_INTERFACE, "GetJobByName"));
        assert!(is_read_only(PROPERTIES, "Get"));
        assert!(!is_read_only(PROPERTIES, "Set"));
        assert!(!is_read_only(JOB_INTERFACE, "Start"));
        assert!(!is_read_only(MANAGER_INTERFACE, "GetState"));
        assert!(!is_read_only(MANAGER_INTERFACE, "GetEnv"));
    }
}
