//! TLS for the tests: a test certificate authority (rcgen) that issues
//! server certificates, and a blocking rustls client. Its reads tell a
//! clean close from a cut one: after the server's `close_notify` a read
//! returns `Ok(0)`; an end of stream without it is an `UnexpectedEof`
//! error (a truncation).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use lameduck::tls::{TlsAcceptor, rustls};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::client::{Client, IO_TIMEOUT};

/// A TLS client's stream: rustls over a blocking TCP stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A test certificate authority: its certificate is the only root the
/// test clients trust.
#[derive(Debug)]
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A server certificate (for `localhost`) and its key, issued by a
/// [`TestCa`].
#[derive(Clone, Debug)]
pub struct ServerCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER (what a client sees).
    pub der: CertificateDer<'static>,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA with a fresh key.
    #[must_use]
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lameduck test CA");
        let key = rcgen::KeyPair::generate().expect("a CA key");
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("the CA certificate"),
        }
    }

    /// A certificate for `localhost`, with common name `name` (which tells
    /// two certificates apart).
    #[must_use]
    pub fn issue(&self, name: &str) -> ServerCert {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing the server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client configuration trusting this CA only, offering `alpn`.
    #[must_use]
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("the CA certificate as a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl ServerCert {
    /// A server's acceptor with this certificate.
    #[must_use]
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("the test certificate makes an acceptor")
    }
}

/// Connects to `addr` and completes the TLS handshake (server name
/// `localhost`), with [`IO_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<Client<TlsStream>> {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("a valid server name");
    let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    // Each pass moves the handshake on (a read or a write, bounded by
    // IO_TIMEOUT); a handshake takes a few.
    for _ in 0..16 {
        if !stream.conn.is_handshaking() {
            return Ok(Client::over(stream));
        }
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Err(io::Error::other("the TLS handshake did not complete"))
}

/// The first bytes a real client sends (a complete ClientHello record),
/// for tests that stop partway.
#[must_use]
pub fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("a valid server name");
    let mut conn = ClientConnection::new(config.clone(), name).expect("a client connection");
    let mut hello = Vec::new();
    // A ClientHello is one write; the bound is for form.
    for _ in 0..4 {
        if !conn.wants_write() {
            break;
        }
        conn.write_tls(&mut hello).expect("writing to a Vec");
    }
    hello
}
