//! Test PKI made with rcgen, and a TLS echo listener that reports each handshake's outcome.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_tls::{ClientTls, ClientTlsOptions, ServerTls};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Bounds every network step of a test so a bug fails the test instead of hanging it.
pub const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A leaf usable as server and client certificate: (cert PEM, key PEM).
    pub fn leaf(&self, cn: &str, sans: &[&str], serial: u64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn crl(&self, revoked_serials: &[u64]) -> String {
        let crl = self
            .crl_params(revoked_serials)
            .signed_by(&self.issuer)
            .unwrap();
        crl.pem().unwrap()
    }

    pub fn crl_der(&self, revoked_serials: &[u64]) -> Vec<u8> {
        let crl = self
            .crl_params(revoked_serials)
            .signed_by(&self.issuer)
            .unwrap();
        crl.der().to_vec()
    }

    fn crl_params(&self, revoked_serials: &[u64]) -> CertificateRevocationListParams {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
    }
}

pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Replaces a file the way deploy tools do: write aside, then rename over it.
pub fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes a (cert, key) pair into `dir` as `<name>.pem` / `<name>-key.pem`.
pub fn write_pair(dir: &Path, name: &str, pair: &(String, String)) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("{name}.pem"), &pair.0),
        write(dir, &format!("{name}-key.pem"), &pair.1),
    )
}

/// A listener that handshakes with `tls` and echoes; each handshake's outcome
/// (Ok(peer CN) or Err(text)) is sent on the returned channel.
pub async fn echo_server(
    tls: ServerTls,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<Option<String>, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tls.accept(tcp).await {
                    Ok(mut stream) => {
                        let cn = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first().cloned())
                            .and_then(|c| cn_of(&c));
                        let _ = tx.send(Ok(cn));
                        let mut buf = [0u8; 4];
                        if stream.read_exact(&mut buf).await.is_ok() {
                            let _ = stream.write_all(&buf).await;
                            let _ = stream.flush().await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

pub fn cn_of(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

pub fn serial_of(der: &[u8]) -> u64 {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    u64::try_from(cert.serial.clone()).unwrap()
}

/// Handshakes with `client` and does one echo round trip. Ok(serial of the served certificate).
pub async fn session(addr: SocketAddr, client: &ClientTls) -> Result<u64, String> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = client
            .connect("localhost", tcp)
            .await
            .map_err(|e| e.to_string())?;
        let serial = serial_of(&stream.get_ref().1.peer_certificates().unwrap()[0]);
        // TLS 1.3: the server judges our certificate after our side finished, so only a round
        // trip shows whether it was accepted.
        stream.write_all(b"ping").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if &buf != b"ping" {
            return Err(format!("echo returned {buf:?}"));
        }
        Ok(serial)
    })
    .await
    .map_err(|_| "timed out".to_string())?
}

/// The next handshake outcome the server saw.
pub async fn next_outcome(
    rx: &mut mpsc::UnboundedReceiver<Result<Option<String>, String>>,
) -> Result<Option<String>, String> {
    tokio::time::timeout(STEP_TIMEOUT, rx.recv())
        .await
        .expect("server saw no handshake")
        .expect("server gone")
}

pub fn client(ca: Option<&Path>, pair: Option<&(PathBuf, PathBuf)>) -> ClientTls {
    ClientTls::new(ClientTlsOptions {
        trusted_ca_file: ca.map(Path::to_path_buf),
        cert_file: pair.map(|p| p.0.clone()),
        key_file: pair.map(|p| p.1.clone()),
        server_name_override: None,
        insecure_skip_verify: false,
    })
    .unwrap()
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    rampart_tls::provider()
}
