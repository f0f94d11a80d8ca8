//! Verification that also accepts a peer presenting the very certificate the other side trusts
//! as its CA (a self-signed CA certificate used as a server's or client's own, as etcd's test
//! fixtures and some hand-made setups do). Go's TLS accepts that; webpki refuses a CA certificate
//! as an end entity. Everything else — names, validity, the handshake signature made with the
//! certificate's key — is still checked. [`Verifier`] is the client's side, [`ClientVerifier`]
//! the server's.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug)]
pub struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The CA bundle's certificates, byte for byte.
    anchors: Vec<CertificateDer<'static>>,
}

impl Verifier {
    pub fn new(
        inner: Arc<WebPkiServerVerifier>,
        anchors: Vec<CertificateDer<'static>>,
    ) -> Verifier {
        Verifier { inner, anchors }
    }

    /// The trusted certificate itself: valid now and naming the server.
    fn accept_anchor(
        &self,
        cert: &CertificateDer<'_>,
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        check_validity(cert, now)?;
        let ee = rustls::server::ParsedCertificate::try_from(cert)?;
        rustls::client::verify_server_name(&ee, name)
    }
}

/// Whether `cert` is valid at `now`.
fn check_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = now.as_secs() as i64;
    let validity = parsed.validity();
    if now < validity.not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
    }
    if now > validity.not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

/// The server's side: a client certificate that is byte for byte one of the trusted CA
/// certificates is accepted if valid now (its holder proves it has the CA's own key).
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
}

impl ClientVerifier {
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        anchors: Vec<CertificateDer<'static>>,
    ) -> ClientVerifier {
        ClientVerifier { inner, anchors }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(rustls::Error::InvalidCertificate(_))
                if self
                    .anchors
                    .iter()
                    .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                check_validity(end_entity, now)?;
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(_))
                if self
                    .anchors
                    .iter()
                    .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                self.accept_anchor(end_entity, server_name, now)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
