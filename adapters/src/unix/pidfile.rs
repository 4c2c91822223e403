//! The pid file: written atomically (a temporary file beside it, renamed
//! over it), so a reader never sees it empty or half-written.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `pid` and a newline to `path`, atomically.
pub(crate) fn write(path: &Path, pid: u32) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the pid file needs a file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{pid}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// [`write`](fn@write); a failure goes to `problem` as one line naming the file.
pub(crate) fn write_or_report(path: &Path, pid: u32, problem: impl FnOnce(String)) {
    if let Err(e) = write(path, pid) {
        problem(format!("cannot write the pid file {}: {e}", path.display()));
    }
}

/// Removes the pid file if it names `pid` (not if a successor's pid was
/// written there since).
pub(crate) fn remove_if(path: &Path, pid: u32) {
    let holds_pid = std::fs::read_to_string(path).is_ok_and(|s| s.trim() == pid.to_string());
    if holds_pid {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_replace_remove() {
        let path = std::env::temp_dir().join(format!("lameduck-pidfile-{}", std::process::id()));
        super::write(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
        super::write(&path, 43).unwrap();
        super::remove_if(&path, 42);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "43\n");
        super::remove_if(&path, 43);
        assert!(!path.exists());
        assert!(super::write(std::path::Path::new("/"), 1).is_err());
    }
}
