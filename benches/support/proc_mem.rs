//! A process's memory as the kernel counts it: resident now (VmRSS, and of
//! it the anonymous pages and the pages of mapped files such as the binary's
//! own code) and the peak since it started (VmHWM), from
//! `/proc/<pid>/status`. Linux only;
//! elsewhere the figures are unknown and the benches print `n/a`.

#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
}

#[cfg(target_os = "linux")]
pub fn of(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Mem {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
    })
}

#[cfg(not(target_os = "linux"))]
pub fn of(_pid: u32) -> Option<Mem> {
    None
}

/// "6.4 MiB".
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// "RSS 6.4 MiB, peak 7.0 MiB", or "RSS n/a" where it cannot be read.
pub fn show(m: Option<Mem>) -> String {
    match m {
        Some(m) => format!("RSS {}, peak {}", mib(m.rss_kib), mib(m.hwm_kib)),
        None => "RSS n/a (read from /proc on Linux only)".into(),
    }
}
