//! Turning TLS and connection failures into one line that names the cause and the fix.

use std::error::Error as StdError;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};

/// Finds the rustls error in an error's source chain.
fn find_rustls(e: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r.clone());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                    return Some(r.clone());
                }
            }
        }
        if let Some(r) = alert_from_text(&err.to_string()) {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// h2 keeps only the text of I/O errors, so an alert the server sent after the handshake
/// (TLS 1.3 client-certificate refusals) reaches us as "received fatal alert: <name>".
fn alert_from_text(text: &str) -> Option<rustls::Error> {
    let (_, name) = text.split_once("received fatal alert: ")?;
    let name = name.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
    let alert = [
        AlertDescription::CertificateRequired,
        AlertDescription::BadCertificate,
        AlertDescription::UnknownCA,
        AlertDescription::CertificateRevoked,
        AlertDescription::AccessDenied,
        AlertDescription::HandshakeFailure,
        AlertDescription::ProtocolVersion,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)?;
    Some(rustls::Error::AlertReceived(alert))
}

fn find_io_kind(e: &(dyn StdError + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// rustls spells names as `DnsName("host")` / `IpAddress(1.2.3.4)`; operators want `host`.
fn name_text(debug: &str) -> String {
    let inner = debug
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(debug);
    inner.trim_matches('"').to_string()
}

/// Explains a rustls error in plain words, with the fix.
pub fn explain_rustls(url: &str, e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{url}: server certificate signed by an unknown authority: pass --cacert <the CA that signed it>"
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { expected, presented }) => format!(
            "{url}: the server certificate is not valid for {}; its names (SANs) are {}: connect with one of those or reissue the certificate with --hosts including it",
            name_text(&format!("{expected:?}")),
            presented.iter().map(|p| name_text(p)).collect::<Vec<_>>().join(", ")
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => format!(
            "{url}: the server certificate does not name this host: connect with a name from its SANs or reissue it with --hosts including this host"
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            format!("{url}: the server certificate has expired: reissue it (rampart pki issue)")
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => format!(
            "{url}: the server requires a client certificate: pass --cert and --key"
        ),
        rustls::Error::AlertReceived(AlertDescription::BadCertificate | AlertDescription::UnknownCA) => format!(
            "{url}: the server rejected our client certificate (not signed by a CA it trusts, revoked, or not allowed): check --cert against the server's --trusted-ca-file"
        ),
        rustls::Error::AlertReceived(AlertDescription::CertificateRevoked) => format!(
            "{url}: the server refused our client certificate: it is revoked (listed in the server's CRL): pass another --cert and --key"
        ),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => format!(
            "{url}: no TLS version in common with the server (check its --tls-min-version)"
        ),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => format!(
            "{url}: TLS handshake refused by the server: if it requires a client certificate: pass --cert and --key"
        ),
        other => format!("{url}: TLS error: {other}"),
    }
}

/// Explains why a gRPC connection could not be made.
pub fn explain_connect_error(url: &str, e: &(dyn StdError + 'static)) -> String {
    if let Some(r) = find_rustls(e) {
        return explain_rustls(url, &r);
    }
    match find_io_kind(e) {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("{url}: connection refused: is a member listening there?")
        }
        Some(std::io::ErrorKind::TimedOut) => format!("{url}: connection timed out"),
        // With TLS 1.3 a server refuses a missing client certificate after the client finished
        // its handshake, so the refusal can also surface as a broken pipe on the first call.
        Some(
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe,
        ) => format!(
            "{url}: the server closed the connection during the handshake: if it serves TLS use https:// and pass --cacert; if it requires a client certificate: pass --cert and --key"
        ),
        _ => {
            let mut text = e.to_string();
            let mut cur = e.source();
            while let Some(s) = cur {
                text.push_str(": ");
                text.push_str(&s.to_string());
                cur = s.source();
            }
            format!("{url}: {text}")
        }
    }
}

/// Explains a failed call: a TLS refusal found in the status's error chain becomes the one-line
/// explanation; anything else is the status message. (With TLS 1.3 the server refuses a client
/// certificate after the client's handshake finished, so this shows up on the first call.)
pub fn explain_status(url: &str, status: &tonic::Status) -> String {
    match find_rustls(status) {
        Some(r) => explain_rustls(url, &r),
        None => match find_io_kind(status) {
            Some(_) => explain_connect_error(url, status),
            None => format!("{url}: {}", status.message()),
        },
    }
}

/// `--insecure-skip-tls-verify`: accepts any server certificate (signatures still checked).
#[derive(Debug)]
pub struct NoVerification(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
