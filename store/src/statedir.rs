//! Where the store lives when `--state-dir` is not given.

use std::path::{Path, PathBuf};

use rustix::fs::{access, Access};

/// The system-wide state directory, used when it is writable.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/socks5d";
/// The last resort, relative to the working directory.
pub const FALLBACK_STATE_DIR: &str = "socks5d-state";

/// The state directory chosen by [`default_state_dir`], and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    /// The directory.
    pub path: PathBuf,
    /// A warning for the operator when the fallback was taken.
    pub warning: Option<String>,
}

/// Chooses the state directory when the operator gave none:
///
/// 1. `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`; the first entry when it lists
///    several, separated by `:`), if set and not empty;
/// 2. else [`SYSTEM_STATE_DIR`] if this process may write it (or, when it does not exist,
///    may create it in `/var/lib`);
/// 3. else `./`[`FALLBACK_STATE_DIR`], with a warning to print: state in the working
///    directory is easily lost or duplicated.
///
/// Looks at the file system (`access(2)`) but changes nothing.
pub fn default_state_dir() -> StateDir {
    choose(
        std::env::var_os("STATE_DIRECTORY").map(PathBuf::from),
        Path::new(SYSTEM_STATE_DIR),
    )
}

fn writable(p: &Path) -> bool {
    access(p, Access::WRITE_OK | Access::EXEC_OK).is_ok()
}

fn choose(state_directory: Option<PathBuf>, system: &Path) -> StateDir {
    if let Some(first) = state_directory
        .as_deref()
        .and_then(|s| {
            s.to_str()
                .map(|s| s.split(':').next().unwrap_or("").to_owned())
        })
        .filter(|s| !s.is_empty())
    {
        return StateDir {
            path: first.into(),
            warning: None,
        };
    }
    let usable = if system.exists() {
        writable(system)
    } else {
        system.parent().is_some_and(writable)
    };
    if usable {
        return StateDir {
            path: system.into(),
            warning: None,
        };
    }
    StateDir {
        path: Path::new(".").join(FALLBACK_STATE_DIR),
        warning: Some(format!(
            "{} is not writable and $STATE_DIRECTORY is not set: keeping users and settings in \
             ./{FALLBACK_STATE_DIR} (give --state-dir to choose)",
            system.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_directory_wins() {
        let d = choose(
            Some("/run/x:/run/y".into()),
            Path::new("/nonexistent/socks5d"),
        );
        assert_eq!(
            d,
            StateDir {
                path: "/run/x".into(),
                warning: None
            }
        );
    }

    #[test]
    fn system_dir_when_writable_else_fallback_with_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("socks5d");
        assert_eq!(
            choose(None, &sys).path,
            sys,
            "creatable in a writable parent"
        );
        assert_eq!(
            choose(Some("".into()), &sys).path,
            sys,
            "empty $STATE_DIRECTORY ignored"
        );
        let d = choose(None, Path::new("/nonexistent-parent/socks5d"));
        assert_eq!(d.path, Path::new("./socks5d-state"));
        assert!(d.warning.unwrap().contains("--state-dir"));
    }
}
