//! An in-process server on 127.0.0.1:0 with a manual clock, and a
//! `signet serve` child process whose log is captured.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use signet::clock::{ManualClock, UnixTime};
use signet::config::{Config, Sources};
use signet::http::{AdminTokens, AppState};
use signet::server::{Listeners, run};
use signet::service::KeyService;
use signet::storage::seal::MasterKeys;
use signet::storage::{FileStore, KeyStore};
use tokio::sync::oneshot;

use super::{Home, MASTER};

pub const ADMIN: &str = "admin-token-0123456789abcdef";
pub const SIGNER: &str = "signer-token-0123456789abcdef";
pub const TOKENS: &str =
    "ops:admin:admin-token-0123456789abcdef,issuer:signer:signer-token-0123456789abcdef";

pub struct TestServer {
    pub public: String,
    pub admin: String,
    pub clock: ManualClock,
    pub service: Arc<KeyService>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub home: Home,
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

impl TestServer {
    /// Starts a server with `config` at instant `start`; its issuer is its own public URL.
    pub async fn start(config: &str, start: UnixTime) -> TestServer {
        TestServer::start_in(Home::new(config), MASTER, start).await
    }

    /// Starts a server on an existing home (its keys directory as it is),
    /// with `master` as `SIGNET_MASTER_KEYS`, at instant `start`.
    pub async fn start_in(home: Home, master: &str, start: UnixTime) -> TestServer {
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (p, a) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
        let text = std::fs::read_to_string(home.config()).unwrap();
        let text = text
            .lines()
            .filter(|l| !l.starts_with("issuer = "))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(home.config(), format!("issuer = \"http://{p}\"\n{text}\n")).unwrap();
        let clock = ManualClock::new(start);
        let env = |_: &str| None;
        let config = Config::load(
            &Sources {
                file: Some(&home.config()),
                env: &env,
            },
            start,
        )
        .unwrap();
        let store: Arc<dyn KeyStore> = Arc::new(FileStore::open(home.keys()).unwrap());
        let service = Arc::new(
            KeyService::open(
                Arc::new(config),
                store,
                MasterKeys::parse(master).unwrap(),
                Arc::new(clock.clone()),
            )
            .unwrap(),
        );
        service.tick().unwrap();
        let state = AppState::new(service.clone(), AdminTokens::parse(TOKENS).unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(Listeners { public, admin }, state, async move {
            let _ = rx.await;
        }));
        TestServer {
            public: format!("http://{p}"),
            admin: format!("http://{a}"),
            clock,
            service,
            http: client(),
            stop: Some(tx),
            task: Some(task),
            home,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.public))
            .send()
            .await
            .unwrap()
    }

    /// `GET` on the admin listener, without a token (metrics).
    pub async fn get_admin(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.admin))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send().await.unwrap()
    }

    /// `POST /v1/tokens` with the signer token.
    pub async fn sign(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/tokens", Some(SIGNER), body).await
    }

    /// `POST /v1/verify` with the signer token.
    pub async fn verify(&self, purpose: &str, token: &serde_json::Value) -> reqwest::Response {
        self.post(
            "/v1/verify",
            Some(SIGNER),
            serde_json::json!({"purpose": purpose, "token": token}),
        )
        .await
    }

    pub async fn stop(self) {
        self.stop_and_keep_home().await;
    }

    /// Stops the server and hands back its home, keys and all.
    pub async fn stop_and_keep_home(mut self) -> Home {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.home
    }
}

/// A `signet serve` child process on port 0, its log captured.
pub struct ServeProcess {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    pub fn start(home: &Home, extra_env: &[(&str, &str)]) -> ServeProcess {
        ServeProcess::start_limited(home, extra_env, None)
    }

    /// Like [`start`](Self::start), with the open-file limit (soft and hard)
    /// set to `nofile` first, as a service manager would.
    pub fn start_limited(
        home: &Home,
        extra_env: &[(&str, &str)],
        nofile: Option<u32>,
    ) -> ServeProcess {
        let args = [
            "serve",
            "--public-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ];
        let mut cmd = home.cmd(&args);
        if let Some(n) = nofile {
            let inner = cmd;
            cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(inner.get_program())
                .args(inner.get_args());
            cmd.env_clear();
            for (k, v) in inner.get_envs() {
                if let Some(v) = v {
                    cmd.env(k, v);
                }
            }
            if let Some(dir) = inner.get_current_dir() {
                cmd.current_dir(dir);
            }
        }
        cmd.env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["fields"]["message"] == "listening"
                {
                    let addr = |k: &str| {
                        v["fields"][k]
                            .as_str()
                            .unwrap()
                            .parse::<SocketAddr>()
                            .unwrap()
                    };
                    let _ = tx.send((addr("public"), addr("admin")));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (public, admin) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("signet serve did not start: {:?}", log.lock().unwrap()));
        ServeProcess {
            child,
            public,
            admin,
            log,
            reader: Some(reader),
        }
    }

    /// Sends SIGKILL (no chance to clean up) and waits for the exit.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
        // The child's stderr closes when it exits: the reader has every line after this.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServeProcess {
    /// A test that failed half-way leaves no server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
