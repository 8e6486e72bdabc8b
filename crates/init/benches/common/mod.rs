//! What the benchmarks share: the typical job files of the memory figures.

/// A typical job file, of four kinds; none of them starts.
pub fn typical_job(i: usize) -> String {
    let prev = i.saturating_sub(1);
    match i % 4 {
        0 => format!(
            "description \"bench service {i}\"\n\
             author \"bench\"\n\
             start on never-emitted-{i}\n\
             stop on runlevel [016]\n\
             env FOO=bar-{i}\n\
             env LANG=C\n\
             respawn\n\
             respawn limit 10 5\n\
             exec /usr/bin/service-{i} --flag --port={i}\n"
        ),
        1 => format!(
            "# a service with set-up and clean-up\n\
             start on (never-emitted-{i} and filesystem) or started job-{prev}\n\
             stop on stopping job-{prev} or runlevel [!2345]\n\
             env DIR=/run/bench-{i}\n\
             export DIR\n\
             pre-start script\n\
             \x20   mkdir -p \"$DIR\"\n\
             \x20   [ -d \"$DIR\" ] || exit 1\n\
             end script\n\
             exec sleep 1000\n\
             post-stop exec rm -rf /run/bench-{i}\n"
        ),
        2 => format!(
            "description \"bench task {i}\"\n\
             task\n\
             start on never-emitted-{i} IFACE!=lo\n\
             instance $IFACE\n\
             script\n\
             \x20   for n in 1 2 3; do\n\
             \x20       echo \"$IFACE $n\"\n\
             \x20   done\n\
             \x20   exit 0\n\
             end script\n"
        ),
        _ => format!(
            "start on never-emitted-{i} and (local-filesystems or remote-filesystems)\n\
             stop on never-emitted-{i}-end\n\
             expect fork\n\
             kill timeout 10\n\
             normal exit 0 1 TERM\n\
             console none\n\
             umask 022\n\
             nice 5\n\
             limit nofile 1024 4096\n\
             env OPTS=\"-d --pid /run/service-{i}.pid\"\n\
             exec /usr/sbin/service-{i} $OPTS\n"
        ),
    }
}
