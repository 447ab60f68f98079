//! Output: permanent lines, and on a terminal a status line redrawn in
//! place while a round runs.

use std::io::Write;
use std::time::Duration;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Octets in binary units, e.g. `1.15 GiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// A memory size as a person would write it: `1 GiB`, `256 MiB`, else
/// as [`bytes`].
pub fn size_label(n: u64) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        bytes(n)
    }
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Milliseconds, e.g. `182 ms`.
pub fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A text progress bar of `width` cells.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done.min(total) as u128 * width as u128) / total as u128) as usize
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Where lines go: stdout, with a redrawable status line on a terminal.
pub struct Screen {
    tty: bool,
    status_shown: bool,
}

impl Screen {
    /// `tty`: redraw a status line in place (else only permanent lines).
    pub fn new(tty: bool) -> Screen {
        Screen {
            tty,
            status_shown: false,
        }
    }

    /// Whether a status line is drawn (stdout is a terminal, not `--plain`).
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Prints a permanent line (above the status line on a terminal).
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.status_shown {
            let _ = write!(out, "\r\x1b[K");
            self.status_shown = false;
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Replaces the status line (terminal only).
    pub fn status(&mut self, text: &str) {
        if !self.tty {
            return;
        }
        // A status line that wraps could not be redrawn in place.
        let cols = crate::sys::terminal_columns().unwrap_or(80);
        let text: String = text.chars().take(cols.saturating_sub(1)).collect();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[K{text}");
        let _ = out.flush();
        self.status_shown = true;
    }

    /// Removes the status line.
    pub fn clear_status(&mut self) {
        if self.status_shown {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
            self.status_shown = false;
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.clear_status();
    }
}

/// `p` relative to the current directory when it lies under it (the demo
/// runs from the repository: `target/demo/logs`), else as it is.
pub fn relative_to_cwd(p: &std::path::Path) -> std::path::PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn bytes_uses_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(256 << 20), "256 MiB");
        assert_eq!(bytes(1 << 30), "1.00 GiB");
    }

    #[test]
    fn size_label_prefers_whole_units() {
        assert_eq!(size_label(1 << 30), "1 GiB");
        assert_eq!(size_label(4 << 30), "4 GiB");
        assert_eq!(size_label(1536 << 20), "1536 MiB");
        assert_eq!(size_label(256 << 20), "256 MiB");
        assert_eq!(size_label(1000), "1000 B");
    }

    #[test]
    fn bar_fills_in_proportion_and_full_for_empty_phases() {
        assert_eq!(bar(0, 10, 4), "[----]");
        assert_eq!(bar(5, 10, 4), "[##--]");
        assert_eq!(bar(10, 10, 4), "[####]");
        assert_eq!(bar(0, 0, 4), "[####]");
        assert_eq!(bar(20, 10, 4), "[####]");
    }
}
