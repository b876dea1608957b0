//! A resource server that trusts signet access tokens.
//!
//! ```sh
//! cargo run --release -- serve                  # in one terminal
//! cargo run --example resource_server           # in another
//! TOKEN=$(curl -s -X POST http://127.0.0.1:8081/v1/tokens \
//!   -H "Authorization: Bearer $(cat keys/admin.token)" -H 'Content-Type: application/json' \
//!   -d '{"purpose":"access_token","claims":{"sub":"user-1","aud":"orders"}}' | jq -r .token)
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/orders
//! ```
//!
//! `SIGNET_URL` (default `http://127.0.0.1:8080`) points at signet's public listener.

use axum::Router;
use axum::routing::get;
use serde::Deserialize;
use signet::verifier::{Verified, Verifier};

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

async fn orders(token: Verified<Claims>) -> String {
    format!(
        "orders of {} (token signed by key {})\n",
        token.claims.sub, token.kid
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let signet = std::env::var("SIGNET_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let verifier = Verifier::builder(format!("{signet}/.well-known/jwks.json"))
        .issuer(signet.as_str())
        .audience("orders")
        .purpose("access_token")
        .build()?;
    let app = Router::new()
        .route("/orders", get(orders))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "resource server on http://{}/orders",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
