//! A private PostgreSQL cluster for one test: `initdb` in a temporary directory, listening on
//! a unix socket in that directory only (no TCP at all), stopped and removed on drop.
//!
//! The binaries come from Debian's `postgresql` (`/usr/lib/postgresql/*/bin`, the newest),
//! else from `PATH`. PostgreSQL refuses to run as root: as root, the cluster runs as the
//! `postgres` user (`runuser -u postgres --`). A machine without PostgreSQL makes the test
//! fail with a message saying so: it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The socket's port number (it only names the socket file: the directory is private).
const PORT: u16 = 5432;

/// A running private cluster; dropping it stops it (`immediate`) and removes its directory.
#[derive(Debug)]
pub struct Pg {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match which {
        Some(p) if !p.is_empty() => Path::new(&p).parent().expect("a path").to_path_buf(),
        _ => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): \
             install Debian's `postgresql` (.ci/run does)"
        ),
    }
}

/// Whether this process runs as root (`id -u`: no unsafe code for `geteuid`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Pg {
    /// Creates and starts a cluster (`postgres` superuser, trust authentication over the
    /// private socket, `fsync=off`: a test cluster).
    ///
    /// # Panics
    ///
    /// If it cannot: with the command's output.
    #[must_use]
    pub fn start() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("socks5d-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let as_postgres = is_root();
        let pg = Self {
            dir,
            bin: bin_dir(),
            as_postgres,
        };
        if as_postgres {
            pg.must(
                Command::new("chown").arg("postgres:postgres").arg(&pg.dir),
                "chown the cluster directory to postgres",
            );
        }
        let data = pg.data();
        pg.must(
            pg.tool("initdb").arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        pg.start_again();
        pg
    }

    /// The socket directory (also the cluster's top directory).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for socks5d's `--user-store`, as role `user`, with `application_name` `app`.
    #[must_use]
    pub fn url(&self, user: &str, app: &str) -> String {
        format!(
            "postgresql:///postgres?host={}&port={PORT}&user={user}&application_name={app}",
            self.dir.display()
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn must(&self, c: &mut Command, what: &str) -> Output {
        let out = c
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("PostgreSQL: cannot run {what}: {e}"));
        assert!(
            out.status.success(),
            "PostgreSQL: {what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        out
    }

    /// Starts the (stopped) cluster again and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {PORT} -k {} -c listen_addresses='' -c fsync=off -c max_connections=60",
            self.dir.display()
        );
        self.must(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-w", "-t", "30", "-o", &opts, "start"]),
            "pg_ctl start",
        );
    }

    /// Stops the cluster at once (`immediate`: every connection is cut as by a crash).
    ///
    /// # Panics
    ///
    /// If it does not stop.
    pub fn stop(&self) {
        self.must(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "immediate", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Runs `sql` as `postgres` with `psql` and returns its unaligned output, one row a line.
    ///
    /// # Panics
    ///
    /// If psql fails.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.must(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &PORT.to_string(), "-U", "postgres", "-d", "postgres"])
                .args(["-c", sql]),
            "psql",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
