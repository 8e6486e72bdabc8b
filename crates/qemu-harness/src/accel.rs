//! KVM or TCG: what the probes found, and the decision as a pure function
//! of it.
//!
//! A `/dev/kvm` is not proof that KVM works. On the build machines it is
//! the `kvm_pvm` module (nested "PVM" virtualization, no `vmx`/`svm` in
//! `/proc/cpuinfo`), on which a stock Debian kernel spins forever without
//! printing a line. So the decision takes three facts, cheapest first: is
//! `/dev/kvm` there and openable, does the CPU advertise hardware
//! virtualization, and — only when both say yes — did a probe boot with
//! KVM print the kernel's first line within a few seconds.

use std::fs::OpenOptions;
use std::path::Path;

use crate::job::Accel;

/// What opening `/dev/kvm` read-write gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevKvm {
    Missing,
    NoAccess(String),
    Usable,
}

/// What a short boot with `-accel kvm` showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeBoot {
    /// The kernel printed its banner.
    Booted,
    /// Nothing from the kernel within the probe's time (the PVM hang).
    Silent { seconds: u64 },
    /// QEMU refused or failed (its message).
    QemuFailed(String),
}

/// The probe results known so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub dev_kvm: DevKvm,
    /// `vmx` or `svm` in `/proc/cpuinfo`'s flags.
    pub cpu_virt: bool,
    /// The probe boot, once it has been done.
    pub probe: Option<ProbeBoot>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Kvm,
    /// Emulate; the reason is logged.
    Tcg(String),
    /// The cheap facts allow KVM: do the probe boot and decide again.
    ProbeNeeded,
}

/// Decides between KVM and TCG. An `Err` is an infrastructure error: KVM
/// was required and cannot be had.
pub fn decide(requested: Accel, facts: &Facts) -> Result<Decision, String> {
    if requested == Accel::Tcg {
        return Ok(Decision::Tcg("the job file asks for tcg".into()));
    }
    let unusable = match (&facts.dev_kvm, facts.cpu_virt, &facts.probe) {
        (DevKvm::Missing, ..) => "/dev/kvm does not exist".to_string(),
        (DevKvm::NoAccess(why), ..) => format!("/dev/kvm cannot be opened: {why}"),
        // Asked for KVM explicitly: try it even without the flags.
        (DevKvm::Usable, false, None) if requested == Accel::Kvm => return Ok(Decision::ProbeNeeded),
        (DevKvm::Usable, false, None) => {
            "/proc/cpuinfo shows no vmx/svm: this /dev/kvm is not hardware virtualization \
             (e.g. kvm_pvm, on which the kernel hangs)"
                .to_string()
        }
        (DevKvm::Usable, _, None) => return Ok(Decision::ProbeNeeded),
        (DevKvm::Usable, _, Some(ProbeBoot::Booted)) => return Ok(Decision::Kvm),
        (DevKvm::Usable, _, Some(ProbeBoot::Silent { seconds })) => {
            format!("a probe boot with KVM printed nothing in {seconds} s")
        }
        (DevKvm::Usable, _, Some(ProbeBoot::QemuFailed(why))) => format!("QEMU cannot use KVM: {why}"),
    };
    match requested {
        Accel::Kvm => Err(format!("KVM is unusable: {unusable}")),
        _ => Ok(Decision::Tcg(format!("KVM is unusable: {unusable}"))),
    }
}

/// Opens `/dev/kvm` read-write.
pub fn probe_dev_kvm(path: &Path) -> DevKvm {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => DevKvm::Usable,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DevKvm::Missing,
        Err(e) => DevKvm::NoAccess(e.to_string()),
    }
}

/// Whether a `/proc/cpuinfo` text advertises hardware virtualization.
pub fn cpu_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dev_kvm: DevKvm, cpu_virt: bool, probe: Option<ProbeBoot>) -> Facts {
        Facts {
            dev_kvm,
            cpu_virt,
            probe,
        }
    }

    #[test]
    fn tcg_when_asked_whatever_the_facts() {
        let f = facts(DevKvm::Usable, true, Some(ProbeBoot::Booted));
        assert!(matches!(decide(Accel::Tcg, &f), Ok(Decision::Tcg(_))));
    }

    #[test]
    fn auto_without_dev_kvm_emulates_and_says_why() {
        let d = decide(Accel::Auto, &facts(DevKvm::Missing, true, None)).unwrap();
        assert_eq!(
            d,
            Decision::Tcg("KVM is unusable: /dev/kvm does not exist".into())
        );
        let d = decide(
            Accel::Auto,
            &facts(DevKvm::NoAccess("Permission denied".into()), true, None),
        );
        assert!(matches!(d, Ok(Decision::Tcg(why)) if why.contains("Permission denied")));
    }

    #[test]
    fn auto_on_pvm_emulates_without_a_probe_boot() {
        // This machine: /dev/kvm opens, but the CPU has no vmx/svm.
        let d = decide(Accel::Auto, &facts(DevKvm::Usable, false, None)).unwrap();
        assert!(matches!(d, Decision::Tcg(why) if why.contains("no vmx/svm")));
    }

    #[test]
    fn auto_with_hardware_virtualization_probes_then_follows_the_probe() {
        assert_eq!(
            decide(Accel::Auto, &facts(DevKvm::Usable, true, None)),
            Ok(Decision::ProbeNeeded)
        );
        let booted = facts(DevKvm::Usable, true, Some(ProbeBoot::Booted));
        assert_eq!(decide(Accel::Auto, &booted), Ok(Decision::Kvm));
        let hung = facts(DevKvm::Usable, true, Some(ProbeBoot::Silent { seconds: 5 }));
        assert_eq!(
            decide(Accel::Auto, &hung),
            Ok(Decision::Tcg(
                "KVM is unusable: a probe boot with KVM printed nothing in 5 s".into()
            ))
        );
        let failed = facts(DevKvm::Usable, true, Some(ProbeBoot::QemuFailed("no KVM".into())));
        assert!(matches!(decide(Accel::Auto, &failed), Ok(Decision::Tcg(_))));
    }

    #[test]
    fn required_kvm_that_is_unusable_is_an_error() {
        assert!(decide(Accel::Kvm, &facts(DevKvm::Missing, true, None)).is_err());
        let hung = facts(DevKvm::Usable, false, Some(ProbeBoot::Silent { seconds: 5 }));
        assert_eq!(
            decide(Accel::Kvm, &hung),
            Err("KVM is unusable: a probe boot with KVM printed nothing in 5 s".into())
        );
        // …but without the cpu flags it is still tried once.
        assert_eq!(
            decide(Accel::Kvm, &facts(DevKvm::Usable, false, None)),
            Ok(Decision::ProbeNeeded)
        );
        let ok = facts(DevKvm::Usable, false, Some(ProbeBoot::Booted));
        assert_eq!(decide(Accel::Kvm, &ok), Ok(Decision::Kvm));
    }

    #[test]
    fn cpu_flags_are_read_from_the_flags_lines() {
        assert!(cpu_has_virt("processor\t: 0\nflags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_has_virt("flags\t\t: fpu svm\n"));
        assert!(!cpu_has_virt("flags\t\t: fpu hypervisor vmxx\nmodel name: vmx\n"));
    }
}
