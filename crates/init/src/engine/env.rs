//! The environment tables that `initctl set-env` and friends change (spec
//! §3.2): the global table every job starts from, and each instance's own
//! table, which its next processes get.

use super::{Engine, EngineError, InstanceKey, env_key, env_set};

impl Engine {
    /// The instance name that `env` selects for `job` (`Job.GetInstance`).
    pub fn instance_name(&self, job: &str, env: &[String]) -> Result<String, EngineError> {
        self.instance_for(job, env, true).map(|(name, _)| name)
    }

    /// The global table (`None`) or an instance's; empty for an unknown
    /// instance.
    pub fn env_table(&self, target: Option<&InstanceKey>) -> &[String] {
        match target {
            None => &self.config.global_env,
            Some(key) => self.instance(key).map_or(&[], |i| i.env.as_slice()),
        }
    }

    fn env_table_mut(&mut self, target: Option<&InstanceKey>) -> Option<&mut Vec<String>> {
        match target {
            None => Some(&mut self.config.global_env),
            Some(key) => self
                .classes
                .get_mut(&key.job)?
                .instances
                .get_mut(&key.instance)
                .map(|i| &mut i.env),
        }
    }

    /// Sets `VAR=VALUE` (`VAR` alone is `VAR=`); with `replace` false an
    /// existing variable is kept.
    pub fn set_env(&mut self, target: Option<&InstanceKey>, var: &str, replace: bool) {
        let entry = if var.contains('=') {
            var.to_string()
        } else {
            format!("{var}=")
        };
        if let Some(table) = self.env_table_mut(target) {
            let exists = table.iter().any(|e| env_key(e) == env_key(&entry));
            if replace || !exists {
                env_set(table, &entry);
            }
        }
    }

    /// Removes a variable; false if it was not set.
    pub fn unset_env(&mut self, target: Option<&InstanceKey>, name: &str) -> bool {
        match self.env_table_mut(target) {
            Some(table) => {
                let before = table.len();
                table.retain(|e| env_key(e) != name);
                table.len() != before
            }
            None => false,
        }
    }

    /// The global table back to `defaults`; an instance's rebuilt from the
    /// global table and its job's `env` stanzas.
    pub fn reset_env(&mut self, target: Option<&InstanceKey>, defaults: Vec<String>) {
        match target {
            None => self.config.global_env = defaults,
            Some(key) => {
                let Some(inst) = self.instance(key) else { return };
                let env = self.class_environment(&inst.conf.clone());
                if let Some(table) = self.env_table_mut(target) {
                    *table = env;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    #[test]
    fn global_table() {
        let mut e = Engine::new(EngineConfig {
            global_env: vec!["PATH=/bin".into()],
            ..EngineConfig::default()
        });
        e.set_env(None, "FOO=1", true);
        e.set_env(None, "FOO=2", false);
        e.set_env(None, "BAR", true);
        assert_eq!(e.env_table(None), ["PATH=/bin", "FOO=1", "BAR="]);
        e.set_env(None, "FOO=3", true);
        assert_eq!(e.env_table(None), ["PATH=/bin", "FOO=3", "BAR="]);
        assert!(e.unset_env(None, "FOO"));
        assert!(!e.unset_env(None, "FOO"));
        e.reset_env(None, vec!["PATH=/usr/bin".into()]);
        assert_eq!(e.env_table(None), ["PATH=/usr/bin"]);
        let missing = InstanceKey::new("nope", "");
        assert!(e.env_table(Some(&missing)).is_empty());
        assert!(!e.unset_env(Some(&missing), "PATH"));
    }
}
