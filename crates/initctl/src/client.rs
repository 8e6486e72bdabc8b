//! The Upstart D-Bus API (spec §3) as `initctl` calls it: one typed method
//! per remote method or property, over one connection. Calls carry the
//! destination (ignored on a private socket) and, on a bus, the
//! no-auto-start flag, as Upstart's initctl sends them.

use std::collections::HashMap;

use zbus::export::serde::Serialize;
use zbus::proxy::{CacheProperties, MethodFlags};
use zbus::wire::DynamicDeserialize;
use zbus::{Connection, DBusError, DynamicType, OwnedObjectPath, OwnedVariant, Proxy};

use upstart_dbus::{
    ERROR_PREFIX, INSTANCE_INTERFACE, JOB_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH, UPSHOT_INTERFACE,
};

use crate::conditions::JobConditions;
use crate::status::InstanceStatus;

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
const UNKNOWN_INTERFACE: &str = "org.freedesktop.DBus.Error.UnknownInterface";

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The D-Bus error name, for error replies.
    pub name: Option<String>,
    /// What to print: the error's message (Upstart's own text, e.g.
    /// `Unknown job: foo`), or its name when it has none.
    pub message: String,
}

impl CallError {
    /// Whether this is the error reply `name`.
    pub fn is(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }

    /// Whether this is Upstart's error `short` (e.g. `UnknownInstance`).
    pub fn is_upstart(&self, short: &str) -> bool {
        self.name.as_deref().and_then(|n| n.strip_prefix(ERROR_PREFIX)) == Some(short)
    }

    /// Whether the object or method does not exist (the object went away).
    pub fn is_gone(&self) -> bool {
        self.is(UNKNOWN_METHOD) || self.is(UNKNOWN_OBJECT) || self.is(UNKNOWN_INTERFACE)
    }

    /// Whether the method is unknown (an older daemon).
    pub fn is_unknown_method(&self) -> bool {
        self.is(UNKNOWN_METHOD)
    }

    fn reply(name: &str, description: Option<&str>) -> CallError {
        let message = match description {
            Some(d) => d.to_string(),
            None => name.to_string(),
        };
        CallError {
            name: Some(name.to_string()),
            message,
        }
    }

    fn bad_reply(what: &str) -> CallError {
        CallError {
            name: None,
            message: format!("Invalid reply: {what}"),
        }
    }
}

impl From<zbus::Error> for CallError {
    fn from(error: zbus::Error) -> CallError {
        match &error {
            zbus::Error::MethodError(name, description, _) => {
                CallError::reply(name.as_str(), description.as_deref())
            }
            zbus::Error::FDO(fdo) => CallError::reply(fdo.name().as_str(), fdo.description()),
            zbus::Error::InputOutput(io) => CallError {
                name: None,
                message: crate::transport::strerror(io),
            },
            other => CallError {
                name: None,
                message: other.to_string(),
            },
        }
    }
}

type Result<T> = std::result::Result<T, CallError>;

/// A job's or instance's object path.
pub type Path = OwnedObjectPath;

/// The init daemon, over one connection.
pub struct Upstart {
    conn: Connection,
    destination: String,
    flags: MethodFlags,
}

fn string(props: &mut HashMap<String, OwnedVariant>, name: &str) -> Result<String> {
    match props.remove(name) {
        Some(v) => String::try_from(v).map_err(|_| CallError::bad_reply(name)),
        None => Ok(String::new()),
    }
}

fn list<T>(props: &mut HashMap<String, OwnedVariant>, name: &str) -> Result<Vec<T>>
where
    Vec<T>: TryFrom<OwnedVariant>,
{
    match props.remove(name) {
        Some(v) => Vec::<T>::try_from(v).map_err(|_| CallError::bad_reply(name)),
        None => Ok(Vec::new()),
    }
}

impl Upstart {
    /// `destination` is the bus name to send to (on a private socket it
    /// is ignored, but zbus wants one); `bus` tells whether a bus daemon
    /// could auto-start it.
    pub fn new(conn: Connection, destination: &str, bus: bool) -> Upstart {
        let flags = if bus {
            MethodFlags::NO_AUTO_START
        } else {
            MethodFlags::empty()
        };
        Upstart {
            conn,
            destination: destination.to_string(),
            flags,
        }
    }

    async fn call<B, R>(&self, path: &str, interface: &str, method: &str, body: &B) -> Result<R>
    where
        B: Serialize + DynamicType,
        R: for<'d> DynamicDeserialize<'d>,
    {
        if self.flags.is_empty() {
            // A private socket: a plain call, without a proxy's set-up.
            let reply = self
                .conn
                .call_method(
                    Some(self.destination.as_str()),
                    path,
                    Some(interface),
                    method,
                    body,
                )
                .await?;
            return Ok(reply.body().deserialize()?);
        }
        let proxy: Proxy<'_> = zbus::proxy::Builder::new(&self.conn)
            .destination(self.destination.as_str())
            .path(path)
            .interface(interface)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        proxy
            .call_with_flags(method, self.flags, body)
            .await?
            .ok_or_else(|| CallError::bad_reply(method))
    }

    async fn manager<B, R>(&self, method: &str, body: &B) -> Result<R>
    where
        B: Serialize + DynamicType,
        R: for<'d> DynamicDeserialize<'d>,
    {
        self.call(MANAGER_PATH, MANAGER_INTERFACE, method, body).await
    }

    async fn get_property(&self, path: &str, interface: &str, name: &str) -> Result<String> {
        let value: OwnedVariant = self.call(path, PROPERTIES, "Get", &(interface, name)).await?;
        String::try_from(value).map_err(|_| CallError::bad_reply(name))
    }

    async fn get_all(&self, path: &str, interface: &str) -> Result<HashMap<String, OwnedVariant>> {
        self.call(path, PROPERTIES, "GetAll", &(interface,)).await
    }

    // Manager.

    pub async fn get_job_by_name(&self, name: &str) -> Result<Path> {
        self.manager("GetJobByName", &(name,)).await
    }

    pub async fn get_all_jobs(&self) -> Result<Vec<Path>> {
        self.manager("GetAllJobs", &()).await
    }

    pub async fn emit_event(&self, name: &str, env: &[String], wait: bool) -> Result<()> {
        self.manager("EmitEvent", &(name, env, wait)).await
    }

    pub async fn reload_configuration(&self) -> Result<()> {
        self.manager("ReloadConfiguration", &()).await
    }

    pub async fn version(&self) -> Result<String> {
        self.get_property(MANAGER_PATH, MANAGER_INTERFACE, "version")
            .await
    }

    pub async fn log_priority(&self) -> Result<String> {
        self.get_property(MANAGER_PATH, MANAGER_INTERFACE, "log_priority")
            .await
    }

    pub async fn set_log_priority(&self, priority: &str) -> Result<()> {
        let body = (MANAGER_INTERFACE, "log_priority", zbus::Variant::from(priority));
        self.call(MANAGER_PATH, PROPERTIES, "Set", &body).await
    }

    pub async fn get_env(&self, job_details: &[String], name: &str) -> Result<String> {
        self.manager("GetEnv", &(job_details, name)).await
    }

    pub async fn set_env(&self, job_details: &[String], var: &str, replace: bool) -> Result<()> {
        self.manager("SetEnv", &(job_details, var, replace)).await
    }

    pub async fn set_env_list(&self, job_details: &[String], vars: &[String], replace: bool) -> Result<()> {
        self.manager("SetEnvList", &(job_details, vars, replace)).await
    }

    pub async fn unset_env(&self, job_details: &[String], name: &str) -> Result<()> {
        self.manager("UnsetEnv", &(job_details, name)).await
    }

    pub async fn unset_env_list(&self, job_details: &[String], names: &[String]) -> Result<()> {
        self.manager("UnsetEnvList", &(job_details, names)).await
    }

    pub async fn list_env(&self, job_details: &[String]) -> Result<Vec<String>> {
        self.manager("ListEnv", &(job_details,)).await
    }

    pub async fn reset_env(&self, job_details: &[String]) -> Result<()> {
        self.manager("ResetEnv", &(job_details,)).await
    }

    pub async fn notify_disk_writeable(&self) -> Result<()> {
        self.manager("NotifyDiskWriteable", &()).await
    }

    pub async fn notify_dbus_address(&self, address: &str) -> Result<()> {
        self.manager("NotifyDBusAddress", &(address,)).await
    }

    /// upshot's `io.upshot.Init1.Shutdown`: `how` is `poweroff`, `reboot`
    /// or `halt`.
    pub async fn shutdown(&self, how: &str) -> Result<()> {
        self.call(MANAGER_PATH, UPSHOT_INTERFACE, "Shutdown", &(how,))
            .await
    }

    pub async fn notify_cgroup_manager_address(&self, address: &str) -> Result<()> {
        self.manager("NotifyCGroupManagerAddress", &(address,)).await
    }

    // Job.

    pub async fn get_instance(&self, job: &Path, env: &[String]) -> Result<Path> {
        self.call(job, JOB_INTERFACE, "GetInstance", &(env,)).await
    }

    pub async fn get_instance_by_name(&self, job: &Path, name: &str) -> Result<Path> {
        self.call(job, JOB_INTERFACE, "GetInstanceByName", &(name,)).await
    }

    pub async fn get_all_instances(&self, job: &Path) -> Result<Vec<Path>> {
        self.call(job, JOB_INTERFACE, "GetAllInstances", &()).await
    }

    pub async fn job_start(&self, job: &Path, env: &[String], wait: bool) -> Result<Path> {
        self.call(job, JOB_INTERFACE, "Start", &(env, wait)).await
    }

    pub async fn job_stop(&self, job: &Path, env: &[String], wait: bool) -> Result<()> {
        self.call(job, JOB_INTERFACE, "Stop", &(env, wait)).await
    }

    pub async fn job_restart(&self, job: &Path, env: &[String], wait: bool) -> Result<Path> {
        self.call(job, JOB_INTERFACE, "Restart", &(env, wait)).await
    }

    /// The job's name: decoded from its object path when that is one of
    /// ours, else its `name` property.
    pub async fn job_name(&self, job: &Path) -> Result<String> {
        match upstart_dbus::parse_path(job.as_str()) {
            Some(upstart_dbus::Object::Job(name)) => Ok(name),
            _ => self.get_property(job, JOB_INTERFACE, "name").await,
        }
    }

    pub async fn job_usage(&self, job: &Path) -> Result<String> {
        self.get_property(job, JOB_INTERFACE, "usage").await
    }

    /// The job's `name`, `start_on`, `stop_on` and `emits`.
    pub async fn job_conditions(&self, job: &Path) -> Result<JobConditions> {
        let mut props = self.get_all(job, JOB_INTERFACE).await?;
        Ok(JobConditions {
            name: string(&mut props, "name")?,
            start_on: list(&mut props, "start_on")?,
            stop_on: list(&mut props, "stop_on")?,
            emits: list(&mut props, "emits")?,
        })
    }

    // Instance.

    pub async fn instance_start(&self, instance: &Path, wait: bool) -> Result<()> {
        self.call(instance, INSTANCE_INTERFACE, "Start", &(wait,)).await
    }

    pub async fn instance_stop(&self, instance: &Path, wait: bool) -> Result<()> {
        self.call(instance, INSTANCE_INTERFACE, "Stop", &(wait,)).await
    }

    pub async fn instance_restart(&self, instance: &Path, wait: bool) -> Result<()> {
        self.call(instance, INSTANCE_INTERFACE, "Restart", &(wait,)).await
    }

    pub async fn instance_reload(&self, instance: &Path) -> Result<()> {
        self.call(instance, INSTANCE_INTERFACE, "Reload", &()).await
    }

    /// The instance's status; `None` when it no longer exists.
    pub async fn instance_status(&self, instance: &Path) -> Result<Option<InstanceStatus>> {
        let mut props = match self.get_all(instance, INSTANCE_INTERFACE).await {
            Ok(props) => props,
            Err(e) if e.is_gone() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(InstanceStatus {
            name: string(&mut props, "name")?,
            goal: string(&mut props, "goal")?,
            state: string(&mut props, "state")?,
            processes: list(&mut props, "processes")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_print_their_message_or_else_their_name() {
        let e = CallError::reply("com.ubuntu.Upstart0_6.Error.UnknownJob", Some("Unknown job: foo"));
        assert_eq!(e.message, "Unknown job: foo");
        assert!(e.is_upstart("UnknownJob"));
        assert!(!e.is_upstart("UnknownInstance"));
        assert!(!e.is_gone());
        let e = CallError::reply("org.example.Error.Odd", None);
        assert_eq!(e.message, "org.example.Error.Odd");
        assert!(!e.is_upstart("Odd"));
    }

    #[test]
    fn fdo_errors_keep_their_text() {
        let e = CallError::from(zbus::Error::FDO(Box::new(zbus::fdo::Error::InvalidArgs(
            "Name may not be empty string".into(),
        ))));
        assert_eq!(e.name.as_deref(), Some("org.freedesktop.DBus.Error.InvalidArgs"));
        assert_eq!(e.message, "Name may not be empty string");
        let e = CallError::from(zbus::Error::FDO(Box::new(zbus::fdo::Error::NameHasNoOwner(
            "Name \"com.ubuntu.Upstart\" does not exist".into(),
        ))));
        assert_eq!(e.message, "Name \"com.ubuntu.Upstart\" does not exist");
        let e = CallError::from(zbus::Error::FDO(Box::new(zbus::fdo::Error::UnknownObject(
            "gone".into(),
        ))));
        assert!(e.is_gone());
    }
}
