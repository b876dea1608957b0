//! TLS to PostgreSQL on rustls (ring), per the URL's `sslmode`:
//! `disable` and `prefer` (the default) connect in plain text; `require`
//! encrypts without checking the server's certificate (as libpq does);
//! `verify-full` checks the chain (against `sslrootcert`, else the system's
//! roots) and the host name. Nothing process-wide is installed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Socket;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::storage::StoreError;

/// What `sslmode` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mode {
    /// Plain text (`disable`, `prefer`, or no sslmode).
    Plain,
    /// Encrypted, the certificate unchecked.
    Require,
    /// Encrypted, chain and host name checked; roots from this PEM file, or the system's.
    VerifyFull(Option<String>),
}

/// Takes `sslmode` and `sslrootcert` out of a connection string (the
/// PostgreSQL client parses neither `verify-full` nor `sslrootcert`) and
/// returns what is left with `sslmode=require` when TLS is asked for.
pub(super) fn split(url: &str) -> Result<(String, Mode), StoreError> {
    let bad = |reason: String| StoreError::Database {
        action: "parse SIGNET_DATABASE_URL",
        reason,
    };
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            root = Some(value.to_owned());
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k, v)
            })
            .collect();
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        url.split_whitespace()
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k, v)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mode = match mode.as_deref() {
        None | Some("disable") | Some("prefer") | Some("allow") => Mode::Plain,
        Some("require") => Mode::Require,
        Some("verify-full") => Mode::VerifyFull(root),
        Some("verify-ca") => {
            return Err(bad(
                "sslmode=verify-ca is not supported: use verify-full (it also checks the host name)"
                    .into(),
            ));
        }
        Some(other) => return Err(bad(format!("unknown sslmode {other:?}"))),
    };
    let rest = match mode {
        Mode::Plain => rest,
        _ if url.starts_with("postgres") && url.contains("://") => {
            let sep = if rest.contains('?') { '&' } else { '?' };
            format!("{rest}{sep}sslmode=require")
        }
        _ => format!("{rest} sslmode=require"),
    };
    Ok((rest, mode))
}

/// The rustls configuration for `mode` (never called for `Plain`).
pub(super) fn client_config(mode: &Mode) -> Result<rustls::ClientConfig, StoreError> {
    let fail = |reason: String| StoreError::Database {
        action: "set up TLS to the database",
        reason,
    };
    let provider = Arc::new(crate::crypto::tls_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let config = match mode {
        Mode::Plain | Mode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        Mode::VerifyFull(Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(format!("sslrootcert {path}: {e}")))?
            {
                let cert = cert.map_err(|e| fail(format!("sslrootcert {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("sslrootcert {path}: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Mode::VerifyFull(None) => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| fail(e.to_string()))?
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// `sslmode=require`: the handshake is checked, the certificate is not.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The PostgreSQL client's TLS hook, on tokio-rustls.
#[derive(Clone)]
pub(super) struct Rustls(pub(super) Arc<rustls::ClientConfig>);

/// One connection's TLS handshake.
pub(super) struct Handshake {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// An encrypted connection.
pub(super) struct Stream(tokio_rustls::client::TlsStream<Socket>);

impl MakeTlsConnect<Socket> for Rustls {
    type Stream = Stream;
    type TlsConnect = Handshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Handshake> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Handshake {
            config: self.0.clone(),
            name,
        })
    }
}

impl TlsConnect<Socket> for Handshake {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, socket)
                .await?;
            Ok(Stream(tls))
        })
    }
}

impl TlsStream for Stream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_forms() {
        let (rest, mode) = split(
            "postgres://u@db/signet?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(mode, Mode::VerifyFull(Some("/ca.pem".into())));
        assert_eq!(
            rest,
            "postgres://u@db/signet?application_name=x&sslmode=require"
        );
        let (rest, mode) = split("host=db dbname=signet sslmode=require").unwrap();
        assert_eq!(mode, Mode::Require);
        assert_eq!(rest, "host=db dbname=signet sslmode=require");
        let (rest, mode) = split("host=/run/postgresql dbname=signet").unwrap();
        assert_eq!(mode, Mode::Plain);
        assert_eq!(rest, "host=/run/postgresql dbname=signet");
        assert!(split("host=db sslmode=verify-ca").is_err());
        assert!(split("host=db sslmode=sometimes").is_err());
    }
}
