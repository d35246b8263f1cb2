//! Process hardening at start, and the host's groups.

/// Turn core dumps off for this process: `RLIMIT_CORE` = 0 (soft and hard, so nothing in the
/// process can raise it again) and, on Linux, `PR_SET_DUMPABLE` = 0 (no core even through a
/// `core_pattern` pipe, no ptrace attach by other processes of the same user, `/proc/self`
/// owned by root). Best effort: a refusal is logged at debug level once logging is up, never
/// fatal (a sandbox may forbid `prctl`).
pub fn disable_core_dumps() -> Vec<String> {
    let mut failed = Vec::new();
    let zero = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Core, zero) {
        failed.push(format!("setrlimit(RLIMIT_CORE, 0): {e}"));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        failed.push(format!("prctl(PR_SET_DUMPABLE, 0): {e}"));
    }
    failed
}

/// A group's id: a number, or a name from /etc/group (groups only in a directory service such
/// as LDAP need their number).
pub fn resolve_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| {
            format!(
                "group `{name}` is not in /etc/group; give its numeric gid (a directory-service \
                 group) or create it"
            )
        })
}

/// This host's name (Linux: the kernel's; else `$HOSTNAME`; else "unknown"), read once.
pub fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn core_dumps_are_turned_off() {
        let failed = super::disable_core_dumps();
        assert!(failed.is_empty(), "{failed:?}");
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        #[cfg(target_os = "linux")]
        assert_eq!(
            rustix::process::dumpable_behavior().ok(),
            Some(rustix::process::DumpableBehavior::NotDumpable)
        );
    }
}
