//! A throwaway PostgreSQL for the test run: `initdb` into a temporary
//! directory as the `postgres` OS user (the server refuses root), listening
//! on a Unix socket, and on 127.0.0.1 with TLS (a certificate from a
//! throwaway CA) for the TLS tests. A watchdog stops it and removes the directory when
//! the test process exits. Each test gets its own database.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The running cluster: its socket directory and port, and whether it also
/// takes TLS connections on 127.0.0.1 (with `socket_dir/server.crt`).
pub struct Cluster {
    pub socket_dir: PathBuf,
    pub port: u16,
    pub tls: bool,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);
/// CREATE DATABASE copies template1, which concurrent copies may find busy:
/// tests create their databases one at a time.
static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Where PostgreSQL's programs are: on PATH, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest), which apt does not put
/// on PATH. `None` when it is not installed.
fn pg_bin() -> Option<String> {
    static BIN: OnceLock<Option<String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if Command::new("initdb").arg("--version").output().is_ok() {
            return Some(String::new());
        }
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_string_lossy().parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin.display().to_string())
    })
    .clone()
}

/// Runs `cmd` as the `postgres` OS user when this process is root, with
/// PostgreSQL's programs on PATH.
fn as_postgres(cmd: &str) -> Command {
    let cmd = match pg_bin() {
        Some(bin) if !bin.is_empty() => format!("PATH={bin}:$PATH; {cmd}"),
        _ => cmd.to_owned(),
    };
    let cmd = cmd.as_str();
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    };
    c.env_remove("PGDATA");
    c
}

fn start() -> Result<Cluster, String> {
    let base = PathBuf::from(format!("/tmp/signet-pg-{}", std::process::id()));
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    start_at(base, port)
}

fn start_at(base: PathBuf, port: u16) -> Result<Cluster, String> {
    if pg_bin().is_none() {
        return Err(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql): run tests/setup.sh".into(),
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres:postgres", &base.display().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("cannot give the temporary directory to the postgres user".into());
        }
    }
    let data = base.join("data");
    let init = as_postgres(&format!(
        "initdb -D {} -U postgres --auth=trust --no-sync >{}/initdb.log 2>&1",
        data.display(),
        base.display()
    ))
    .status()
    .map_err(|e| e.to_string())?;
    if !init.success() {
        let log = std::fs::read_to_string(base.join("initdb.log")).unwrap_or_default();
        return Err(format!("initdb failed: {log}"));
    }
    // A self-signed certificate for localhost, for the TLS tests.
    let tls = as_postgres(&format!(
        "cd {base} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=signet-test-ca >/dev/null 2>&1 \
         && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost >/dev/null 2>&1 \
         && printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext \
         && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt >/dev/null 2>&1 \
         && chmod 600 server.key",
        base = base.display()
    ))
    .status()
    .is_ok_and(|s| s.success());
    let tls_options = if tls {
        format!(
            "-c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={base}/server.crt -c ssl_key_file={base}/server.key",
            base = base.display()
        )
    } else {
        "-c listen_addresses=''".to_owned()
    };
    // `pg_ctl -w` returns once the server accepts connections.
    let started = as_postgres(&format!(
        "pg_ctl -D {data} -l {base}/server.log -w -o \"-k {base} -p {port} {tls_options} -c fsync=off\" start >/dev/null",
        data = data.display(),
        base = base.display(),
    ))
    .status()
    .map_err(|e| e.to_string())?;
    if !started.success() {
        let log = std::fs::read_to_string(base.join("server.log")).unwrap_or_default();
        return Err(format!("PostgreSQL did not start: {log}"));
    }
    // A watchdog stops it and removes its files once this process is gone.
    let me = std::process::id();
    as_postgres(&format!(
        "while [ -d /proc/{me} ]; do sleep 1; done; pg_ctl -D {data} -m immediate stop; rm -rf {base}",
        data = data.display(),
        base = base.display(),
    ))
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .map_err(|e| e.to_string())?;
    Ok(Cluster {
        socket_dir: base,
        port,
        tls,
    })
}

impl Cluster {
    /// A connection string for `db` over the Unix socket.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }
}

/// A fresh database reached over TCP with TLS: its URL without sslmode, and
/// the certificate of the CA that signed the server's.
pub fn tls_database() -> (String, PathBuf) {
    let url = database();
    let cluster = cluster();
    assert!(
        cluster.tls,
        "the test cluster has no TLS: openssl could not make a certificate (run tests/setup.sh)"
    );
    let db = url.rsplit("dbname=").next().unwrap().to_owned();
    (
        format!(
            "host=localhost port={} user=postgres dbname={db}",
            cluster.port
        ),
        cluster.socket_dir.join("ca.crt"),
    )
}

/// The cluster, started on first use. A missing or broken PostgreSQL fails
/// the test with the fix (the tests that need it are `#[ignore]`d, so they
/// run only when asked to: `cargo test -- --include-ignored`).
fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// A fresh database in the cluster.
pub fn database() -> String {
    let cluster = cluster();
    let db = format!("t{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let mut admin = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls)
        .expect("connect to the test cluster");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("create a test database");
    cluster.url(&db)
}

/// Takes the database of `url` away (`up = false`: no new connections, and
/// every open one cut), as an outage would, or gives it back. Other tests'
/// databases on the cluster are not touched.
pub fn set_up(url: &str, up: bool) {
    let db = url.rsplit("dbname=").next().unwrap().to_owned();
    let admin_url = url.replace(&format!("dbname={db}"), "dbname=postgres");
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS {up}"))
        .unwrap();
    if !up {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .unwrap();
    }
}

static NEXT_OWN: AtomicU32 = AtomicU32::new(0);

/// A cluster of one test's own, which it may stop and start (the shared
/// one serves every other test).
pub struct OwnCluster {
    pub cluster: Cluster,
}

impl OwnCluster {
    pub fn start() -> OwnCluster {
        let n = NEXT_OWN.fetch_add(1, Ordering::SeqCst);
        let base = PathBuf::from(format!("/tmp/signet-pg-{}-own{n}", std::process::id()));
        let port = 40_000 + (std::process::id() % 20_000) as u16 + n as u16;
        match start_at(base, port) {
            Ok(cluster) => OwnCluster { cluster },
            Err(e) => panic!("{e}"),
        }
    }

    /// A new database in this cluster, and its URL.
    pub fn database(&self, db: &str) -> String {
        let mut admin =
            postgres::Client::connect(&self.cluster.url("postgres"), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        self.cluster.url(db)
    }

    fn pg_ctl(&self, action: &str) {
        let base = self.cluster.socket_dir.display().to_string();
        let status = as_postgres(&format!(
            "pg_ctl -D {base}/data -l {base}/server.log -w -m fast -o \"-k {base} -p {port} -c listen_addresses='' -c fsync=off\" {action} >/dev/null",
            port = self.cluster.port
        ))
        .status()
        .unwrap();
        assert!(status.success(), "pg_ctl {action} failed");
    }

    /// Stops the server (every connection is cut), as an outage would.
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts it again, on the same socket and port.
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let base = self.cluster.socket_dir.display().to_string();
        let _ = as_postgres(&format!(
            "pg_ctl -D {base}/data -m immediate stop >/dev/null 2>&1"
        ))
        .status();
    }
}

/// How many sessions wait for the advisory lock of `purpose`'s keyring
/// (`storage/postgres` takes it as `hashtextextended('signet keyring ' ||
/// purpose, 0)`) in `db`'s own database. Counting every advisory wait in the
/// cluster would count other tests' databases, and other purposes' locks
/// that a replica holds for a moment while it commits.
pub fn waiting_for_keyring_lock(db: &mut postgres::Client, purpose: &str) -> i64 {
    // A bigint advisory key is stored as classid (high 32 bits) and objid
    // (low 32 bits), with objsubid 1.
    db.query_one(
        "SELECT count(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('signet keyring ' || $1, 0)",
        &[&purpose],
    )
    .unwrap()
    .get(0)
}
