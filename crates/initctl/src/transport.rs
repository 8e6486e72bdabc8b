//! How `initctl` finds the init daemon (spec §3.5, Upstart's
//! `upstart_open`): the choice is a pure function of the options, the
//! environment and the uid; [`connect`] then opens it.

use zbus::connection::Builder;

use crate::args::{Bus, Options};

/// Where to send the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A private peer-to-peer socket (no bus daemon, no `Hello`).
    Peer { address: String },
    /// A message bus, with the well-known name to send to.
    Bus { bus: Bus, destination: String },
}

/// Why no transport could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceError {
    /// `--user` without `UPSTART_SESSION`.
    NoSession,
    /// `--dest` with a peer-to-peer socket (a usage error).
    DestWithoutBus,
}

impl ChoiceError {
    pub fn message(&self) -> &'static str {
        match self {
            ChoiceError::NoSession => {
                "UPSTART_SESSION isn't set in the environment. Unable to locate the Upstart instance."
            }
            ChoiceError::DestWithoutBus => "--dest given without --system",
        }
    }

    /// Whether it is reported as a usage error (with the `--help` hint).
    pub fn is_usage(&self) -> bool {
        matches!(self, ChoiceError::DestWithoutBus)
    }
}

/// Chooses the transport:
/// 1. `UPSTART_SESSION` set and non-empty and no `--system`/`--session`,
///    or `--user`: the session init at that address;
/// 2. `--system`/`--session`: that bus, sending to `--dest` or
///    `com.ubuntu.Upstart`;
/// 3. otherwise root talks to PID 1's private socket and everyone else
///    uses the system bus.
pub fn choose(options: &Options, upstart_session: Option<&str>, uid: u32) -> Result<Transport, ChoiceError> {
    let session = upstart_session.filter(|s| !s.is_empty());
    let peer = |address: &str| match options.dest {
        Some(_) => Err(ChoiceError::DestWithoutBus),
        None => Ok(Transport::Peer {
            address: address.to_string(),
        }),
    };
    let bus = |bus: Bus| Transport::Bus {
        bus,
        destination: options
            .dest
            .clone()
            .unwrap_or_else(|| upstart_dbus::BUS_NAME.to_string()),
    };

    if options.user || options.bus.is_none() {
        if let Some(address) = session {
            return peer(address);
        }
        if options.user {
            return Err(ChoiceError::NoSession);
        }
    }
    match options.bus {
        Some(b) => Ok(bus(b)),
        None if uid == 0 => peer(upstart_dbus::SYSTEM_ADDRESS),
        None => Ok(bus(Bus::System)),
    }
}

/// Opens the connection; the error is the whole message to print.
pub async fn connect(transport: &Transport) -> Result<zbus::Connection, String> {
    match transport {
        Transport::Peer { address } => Builder::address(address.as_str())
            .p2p()
            .build()
            .await
            .map_err(|e| {
                format!(
                    "Unable to connect to Upstart: {}",
                    connect_error(Some(address), &e)
                )
            }),
        Transport::Bus { bus, .. } => {
            let (builder, what) = match bus {
                Bus::System => (Builder::system(), "system"),
                Bus::Session => (Builder::session(), "session"),
            };
            builder
                .build()
                .await
                .map_err(|e| format!("Unable to connect to {what} bus: {}", connect_error(None, &e)))
        }
    }
}

/// The socket a `unix:` address names.
fn socket_of(address: &str) -> Option<String> {
    let rest = address.strip_prefix("unix:")?;
    rest.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(key, _)| matches!(*key, "abstract" | "path"))
        .map(|(_, value)| value.to_string())
}

/// The reason a connection failed, in libdbus' words where we know them
/// (`Failed to connect to socket /com/ubuntu/upstart: Connection refused`).
/// `address` is the one dialled, when the error does not say.
fn connect_error(address: Option<&str>, error: &zbus::Error) -> String {
    let (io, socket) = match error {
        zbus::Error::Connection(io, dialled) => (io, socket_of(&dialled.to_string())),
        zbus::Error::InputOutput(io) => (io, address.and_then(socket_of)),
        other => return describe(other),
    };
    match socket {
        Some(socket) => format!("Failed to connect to socket {socket}: {}", strerror(io)),
        None => strerror(io),
    }
}

/// An I/O error as `strerror` says it, without Rust's ` (os error N)`.
pub fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

fn describe(error: &zbus::Error) -> String {
    match error {
        zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => strerror(io),
        zbus::Error::Address(text) | zbus::Error::Handshake(text) | zbus::Error::Failure(text) => {
            text.clone()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "unix:abstract=/com/ubuntu/upstart-session/1000/42";

    fn opts(f: impl FnOnce(&mut Options)) -> Options {
        let mut o = Options::default();
        f(&mut o);
        o
    }

    fn peer(address: &str) -> Result<Transport, ChoiceError> {
        Ok(Transport::Peer {
            address: address.to_string(),
        })
    }

    fn bus(bus: Bus, destination: &str) -> Result<Transport, ChoiceError> {
        Ok(Transport::Bus {
            bus,
            destination: destination.to_string(),
        })
    }

    #[test]
    fn upstart_session_means_the_session_init() {
        let o = Options::default();
        assert_eq!(choose(&o, Some(SESSION), 1000), peer(SESSION));
        assert_eq!(choose(&o, Some(SESSION), 0), peer(SESSION));
    }

    #[test]
    fn an_empty_upstart_session_is_ignored() {
        let o = Options::default();
        assert_eq!(choose(&o, Some(""), 1000), bus(Bus::System, "com.ubuntu.Upstart"));
        assert_eq!(choose(&o, Some(""), 0), peer("unix:abstract=/com/ubuntu/upstart"));
    }

    #[test]
    fn a_bus_option_overrides_upstart_session() {
        let system = opts(|o| o.bus = Some(Bus::System));
        let session = opts(|o| o.bus = Some(Bus::Session));
        assert_eq!(
            choose(&system, Some(SESSION), 1000),
            bus(Bus::System, "com.ubuntu.Upstart")
        );
        assert_eq!(
            choose(&session, Some(SESSION), 0),
            bus(Bus::Session, "com.ubuntu.Upstart")
        );
    }

    #[test]
    fn dest_names_the_destination_on_a_bus() {
        let o = opts(|o| {
            o.bus = Some(Bus::Session);
            o.dest = Some("com.ubuntu.TestUpstart".into());
        });
        assert_eq!(
            choose(&o, None, 1000),
            bus(Bus::Session, "com.ubuntu.TestUpstart")
        );
        // Non-root without a bus option uses the system bus, so --dest is fine.
        let o = opts(|o| o.dest = Some("com.x".into()));
        assert_eq!(choose(&o, None, 1000), bus(Bus::System, "com.x"));
    }

    #[test]
    fn dest_without_a_bus_is_a_usage_error_for_private_sockets() {
        let o = opts(|o| o.dest = Some("com.x".into()));
        assert_eq!(choose(&o, None, 0), Err(ChoiceError::DestWithoutBus));
        assert_eq!(choose(&o, Some(SESSION), 1000), Err(ChoiceError::DestWithoutBus));
        assert!(ChoiceError::DestWithoutBus.is_usage());
        assert_eq!(
            ChoiceError::DestWithoutBus.message(),
            "--dest given without --system"
        );
    }

    #[test]
    fn root_uses_pid1s_private_socket_and_users_the_system_bus() {
        let o = Options::default();
        assert_eq!(choose(&o, None, 0), peer("unix:abstract=/com/ubuntu/upstart"));
        assert_eq!(choose(&o, None, 1000), bus(Bus::System, "com.ubuntu.Upstart"));
    }

    #[test]
    fn user_forces_the_session_init() {
        let user = opts(|o| o.user = true);
        assert_eq!(choose(&user, Some(SESSION), 0), peer(SESSION));
        assert_eq!(choose(&user, None, 1000), Err(ChoiceError::NoSession));
        assert_eq!(choose(&user, Some(""), 1000), Err(ChoiceError::NoSession));
        let user_system = opts(|o| {
            o.user = true;
            o.bus = Some(Bus::System);
        });
        assert_eq!(choose(&user_system, Some(SESSION), 1000), peer(SESSION));
        assert!(!ChoiceError::NoSession.is_usage());
        assert_eq!(
            ChoiceError::NoSession.message(),
            "UPSTART_SESSION isn't set in the environment. Unable to locate the Upstart instance."
        );
    }

    #[test]
    fn socket_errors_read_like_libdbus() {
        let refused = zbus::Error::InputOutput(std::io::Error::from_raw_os_error(libc::ECONNREFUSED).into());
        assert_eq!(
            connect_error(Some("unix:abstract=/com/ubuntu/upstart"), &refused),
            "Failed to connect to socket /com/ubuntu/upstart: Connection refused"
        );
        assert_eq!(
            connect_error(Some("unix:guid=00,path=/run/x"), &refused),
            "Failed to connect to socket /run/x: Connection refused"
        );
        assert_eq!(connect_error(Some("tcp:host=h"), &refused), "Connection refused");
        assert_eq!(connect_error(None, &refused), "Connection refused");
        let address: zbus::Address = "unix:abstract=/x".try_into().unwrap();
        let refused = zbus::Error::Connection(
            std::io::Error::from_raw_os_error(libc::ECONNREFUSED).into(),
            Box::new(address),
        );
        // The address the error names wins.
        assert_eq!(
            connect_error(None, &refused),
            "Failed to connect to socket /x: Connection refused"
        );
    }
}
