//! The status line of a job instance (spec §4.1, Upstart's `job_status`):
//!
//! ```text
//! JOB[ (INSTANCE)] GOAL/STATE[, process PID]
//! \tPROC process PID
//! ```

/// An instance's properties, as the Instance object reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceStatus {
    /// The instance name, empty for a single-instance job.
    pub name: String,
    pub goal: String,
    pub state: String,
    /// `(process name, pid)` of each live process, main first.
    pub processes: Vec<(String, i32)>,
}

/// The status text of `job` (one line, plus one per additional live
/// process); `None` for an instance that does not exist: `JOB stop/waiting`.
pub fn status_line(job: &str, instance: Option<&InstanceStatus>) -> String {
    let Some(instance) = instance else {
        return format!("{job} stop/waiting");
    };
    let mut line = if instance.name.is_empty() {
        job.to_string()
    } else {
        format!("{job} ({})", instance.name)
    };
    line.push_str(&format!(" {}/{}", instance.goal, instance.state));
    if let Some(((first, pid), rest)) = instance.processes.split_first() {
        // The processes one expects beside a state go unlabelled.
        if matches!(first.as_str(), "main" | "pre-start" | "post-stop") {
            line.push_str(&format!(", process {pid}"));
        } else {
            line.push_str(&format!(", ({first}) process {pid}"));
        }
        for (name, pid) in rest {
            line.push_str(&format!("\n\t{name} process {pid}"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, goal: &str, state: &str, processes: &[(&str, i32)]) -> InstanceStatus {
        InstanceStatus {
            name: name.into(),
            goal: goal.into(),
            state: state.into(),
            processes: processes.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        }
    }

    #[test]
    fn a_running_job_with_its_main_process() {
        let i = inst("", "start", "running", &[("main", 3648)]);
        assert_eq!(status_line("foo", Some(&i)), "foo start/running, process 3648");
    }

    #[test]
    fn an_instance_name_goes_in_parentheses() {
        let i = inst("tty1", "start", "running", &[("main", 1234)]);
        assert_eq!(
            status_line("tty", Some(&i)),
            "tty (tty1) start/running, process 1234"
        );
        let i = inst("foo", "stop", "pre-stop", &[("pre-stop", 6312)]);
        assert_eq!(
            status_line("drogo", Some(&i)),
            "drogo (foo) stop/pre-stop, (pre-stop) process 6312"
        );
    }

    #[test]
    fn further_processes_get_a_line_each() {
        let i = inst("", "start", "post-start", &[("main", 1234), ("post-start", 1357)]);
        assert_eq!(
            status_line("foo", Some(&i)),
            "foo start/post-start, process 1234\n\tpost-start process 1357"
        );
        let i = inst(
            "",
            "stop",
            "pre-stop",
            &[("main", 5), ("pre-stop", 6), ("post-stop", 7)],
        );
        assert_eq!(
            status_line("foo", Some(&i)),
            "foo stop/pre-stop, process 5\n\tpre-stop process 6\n\tpost-stop process 7"
        );
    }

    #[test]
    fn without_main_a_hook_process_is_labelled() {
        let i = inst("", "start", "post-start", &[("post-start", 1357)]);
        assert_eq!(
            status_line("job", Some(&i)),
            "job start/post-start, (post-start) process 1357"
        );
        let i = inst("", "start", "security", &[("security", 9)]);
        assert_eq!(
            status_line("job", Some(&i)),
            "job start/security, (security) process 9"
        );
    }

    #[test]
    fn pre_start_and_post_stop_go_unlabelled() {
        let i = inst("", "start", "pre-start", &[("pre-start", 11)]);
        assert_eq!(status_line("job", Some(&i)), "job start/pre-start, process 11");
        let i = inst("", "stop", "post-stop", &[("post-stop", 12)]);
        assert_eq!(status_line("job", Some(&i)), "job stop/post-stop, process 12");
    }

    #[test]
    fn no_process_no_pid() {
        let i = inst("", "start", "running", &[]);
        assert_eq!(status_line("task", Some(&i)), "task start/running");
        let i = inst("x", "stop", "killed", &[]);
        assert_eq!(status_line("task", Some(&i)), "task (x) stop/killed");
    }

    #[test]
    fn no_instance_is_stop_waiting() {
        assert_eq!(status_line("foo", None), "foo stop/waiting");
        assert_eq!(status_line("net/apache", None), "net/apache stop/waiting");
    }
}
