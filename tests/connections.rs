//! Connection exhaustion: idle, half-sent and slow clients are cut off, and a
//! flood on the public port leaves the admin API and the store working.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::Home;
use crate::common::server::{ADMIN, ServeProcess, TOKENS, TestServer, client};
use crate::server::T0;

const SHORT: &str = "header_timeout = \"1s\"\nrequest_timeout = \"2s\"\n[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

/// Reads until the server closes the connection; what it sent, or `None`
/// if it was still open after `limit` (far beyond the configured timeouts).
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn idle_half_sent_and_slow_connections_are_closed() {
    // Home::new opens the file with [store]; put the server limits first.
    let home = Home::new(SHORT);
    let text = std::fs::read_to_string(home.config()).unwrap();
    let (store, rest) = text.split_once("header_timeout").unwrap();
    std::fs::write(
        home.config(),
        format!("[server]\nheader_timeout{rest}{store}"),
    )
    .unwrap();
    let s = TestServer::start_in(home, crate::common::MASTER, T0).await;
    let limit = Duration::from_secs(20);

    // Connected, nothing sent.
    let mut idle = TcpStream::connect(addr(&s.public)).await.unwrap();
    // Half a request head.
    let mut half = TcpStream::connect(addr(&s.public)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One request answered, then the keep-alive connection left idle.
    let mut kept = TcpStream::connect(addr(&s.public)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A request body that never finishes, on the admin port.
    let mut slow = TcpStream::connect(addr(&s.admin)).await.unwrap();
    slow.write_all(
        format!("POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"purp").as_bytes(),
    )
    .await
    .unwrap();

    assert!(
        until_closed(&mut idle, limit).await.is_some(),
        "idle connection kept"
    );
    assert!(
        until_closed(&mut half, limit).await.is_some(),
        "half-sent head kept"
    );
    let answered = until_closed(&mut kept, limit)
        .await
        .expect("idle keep-alive kept");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let timed_out = until_closed(&mut slow, limit)
        .await
        .expect("slow body kept");
    assert!(timed_out.starts_with("HTTP/1.1 408"), "{timed_out}");
    // The server still serves.
    assert_eq!(s.get("/healthz").await.status(), 200);
    s.stop().await;
}

#[test]
fn a_connection_flood_on_the_public_port_leaves_the_admin_api_and_the_store_working() {
    let home = Home::new("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n");
    // A 256-descriptor limit, as a service manager may set: without caps,
    // a few hundred idle connections take every descriptor.
    let serve = ServeProcess::start_limited(&home, &[("SIGNET_ADMIN_TOKENS", TOKENS)], Some(256));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 300 idle connections, more than the descriptors: those past the
        // cap and the kernel's backlog wait in SYN retries; give up on them.
        let attempts: Vec<_> = (0..300)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(2),
                    TcpStream::connect(serve.public),
                ))
            })
            .collect();
        let mut flood = Vec::new();
        for a in attempts {
            if let Ok(Ok(c)) = a.await.unwrap() {
                flood.push(c);
            }
        }
        assert!(flood.len() > 200, "only {} connections opened", flood.len());
        let http = client();
        let admin = format!("http://{}", serve.admin);
        let bounded = |f| tokio::time::timeout(Duration::from_secs(20), f);
        let r = bounded(
            http.get(format!("{admin}/v1/keys"))
                .bearer_auth(ADMIN)
                .send(),
        )
        .await
        .expect("the admin API did not answer during the flood")
        .unwrap();
        assert_eq!(r.status(), 200);
        // The store can still open, lock and write its files.
        let r = bounded(
            http.post(format!("{admin}/v1/keys/access_token/rotate"))
                .bearer_auth(ADMIN)
                .json(&json!({"force": true}))
                .send(),
        )
        .await
        .expect("rotation did not answer during the flood")
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        drop(flood);
        // Once the flood is gone the public port serves again.
        let r = bounded(
            http.get(format!("http://{}/.well-known/jwks.json", serve.public))
                .send(),
        )
        .await
        .expect("the public port did not recover")
        .unwrap();
        assert_eq!(r.status(), 200);
    });
    let log = serve.stop().join("\n");
    assert!(log.contains("open-file limit"), "the limits are logged");
}
