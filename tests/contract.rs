//! The HTTP API against its contract, `docs/openapi.json` (OpenAPI 3.1):
//! the document names every route and problem type the server has, the
//! admin listener serves it as kept in the repository, and schemathesis
//! (from PyPI, installed by tests/setup.sh) generates requests from
//! it against a running `signet serve` and finds no server error and no
//! answer the document does not describe.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common::Home;
use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, client};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap())
        .unwrap()
}

#[test]
fn the_document_names_every_route_and_problem_type_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = signet::metrics::ROUTES.iter().copied().collect();
    assert_eq!(
        documented, served,
        "docs/openapi.json and the routers differ"
    );

    // Every problem type the error mapping can produce, and only those.
    let source = std::fs::read_to_string(repo().join("src/http/error.rs")).unwrap();
    let produced: BTreeSet<&str> = source
        .match_indices("\"urn:signet:problem:")
        .map(|(i, _)| {
            let rest = &source[i + 1..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    let listed: BTreeSet<&str> =
        doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
    assert_eq!(
        produced, listed,
        "problem types in src/http/error.rs and the document differ"
    );
    // Each is named by at least one answer.
    let text = doc["paths"].to_string() + &doc["components"]["responses"].to_string();
    for t in &listed {
        let short = t.trim_start_matches("urn:signet:problem:");
        assert!(
            text.contains(&format!("`urn:signet:problem:{short}`")),
            "no answer names {t}"
        );
    }
}

fn schemathesis() -> PathBuf {
    let bin = repo().join("tests/interop/python/.venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is not installed; run tests/setup.sh"
    );
    bin
}

/// Runs schemathesis against `base` for the paths matching `paths`, with
/// `token` if any; panics with its report unless every check passed.
fn conformance(spec: &str, base: &str, paths: &str, token: Option<&str>) {
    let mut cmd = Command::new(schemathesis());
    cmd.args(["run", spec, "--url", base, "--include-path-regex", paths])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        // Bounded: a few hundred requests per run, seconds each.
        .args(["--max-examples", "25", "--phases", "examples,coverage,fuzzing"])
        .args(["--seed", "20261129", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis against {base} ({paths}, token: {}):\n{report}\n{}",
        token.is_some(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis: run tests/setup.sh, then cargo test -- --include-ignored"]
async fn generated_requests_find_no_server_error_and_no_undocumented_answer() {
    let home = Home::new(
        "[purposes.access_token]\nalgorithms = [\"EdDSA\", \"ES256\"]\n[server]\nsigning_queue = 64\n",
    );
    let serve = ServeProcess::start(&home, &[("SIGNET_ADMIN_TOKENS", TOKENS)]);
    let spec = format!("http://{}/openapi.json", serve.admin);
    // Served as kept in the repository.
    let served: Value = client()
        .get(&spec)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, document());

    let public = format!("http://{}", serve.public);
    let admin = format!("http://{}", serve.admin);
    let (public, admin, spec_) = (public.clone(), admin.clone(), spec.clone());
    tokio::task::spawn_blocking(move || {
        conformance(&spec_, &public, r"^/(\.well-known|healthz|readyz)", None);
        conformance(&spec_, &admin, r"^/(v1|metrics|openapi)", Some(ADMIN));
        conformance(&spec_, &admin, r"^/v1/(tokens|verify)", Some(SIGNER));
        // Without a token: 401, then 429 once an address has failed too often.
        conformance(&spec_, &admin, r"^/v1", None);
    })
    .await
    .unwrap();
    let log = serve.stop().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}
