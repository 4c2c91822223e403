//! HTTPS (and TLS for raw streams): rustls through `futures-rustls`, on
//! every TCP listener of a server, whatever its runtime binding.
//!
//! Give a server a [`TlsAcceptor`] with
//! [`Builder::tls`](crate::Builder::tls): every connection accepted on one
//! of its TCP listeners (bound, inherited or handed over by a restarting
//! predecessor) speaks TLS first, then HTTP — or the raw stream protocol of
//! [`serve_stream`](crate::Server::serve_stream). Unix listeners and
//! streams handed in through [`Handle::serve_io`](crate::Handle::serve_io)
//! stay as they are (wrap the latter yourself if they need TLS).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("lameduck-tls-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
//! # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
//! # std::fs::write(&cert, made.cert.pem())?;
//! # std::fs::write(&key, made.signing_key.serialize_pem())?;
//! use lameduck::tls::TlsAcceptor;
//!
//! // A PEM certificate chain (leaf first) and its private key.
//! let acceptor = TlsAcceptor::from_pem_files(&cert, &key)?;
//! let handle = lameduck::Builder::new()
//!     .bind("127.0.0.1:0")?
//!     .tls(acceptor)
//!     .serve_stream(|conn| async move { drop(conn) })?;
//! handle.close();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # The lifecycle over TLS
//!
//! - **The handshake is part of the connection.** A connection in its
//!   handshake is New to the core, exactly like a cleartext connection that
//!   has sent nothing yet: the new-connection grace closes it at the drain,
//!   and [`Config::header_timeout`](lameduck_core::Config::header_timeout)
//!   (counted from the accept) bounds a client that never starts or never
//!   finishes its handshake. The request begins with its first decrypted
//!   byte.
//! - **Closes.** Every close that is not forced sends TLS `close_notify`
//!   first, then FIN, then waits briefly for the peer's end as cleartext
//!   closes do — so a client sees a clean end, not a truncation. A
//!   connection closed before its handshake completed gets no
//!   `close_notify` (there is no session to close), only FIN. A forced close
//!   (the shutdown deadline, `close()`, a body or write timeout) drops the
//!   socket at once.
//! - **A failed handshake** (garbage, an unsupported client, an unknown
//!   protocol) is logged at `debug` level (`log` crate), its connection is
//!   closed after rustls' alert, and nothing else is affected.
//! - **ALPN**: the acceptor offers [`ALPN_PROTOCOLS`]; a connection that
//!   negotiates `h2` is served HTTP/2, any other HTTP/1.1.
//!
//! Certificates are read once, when the acceptor is made. To serve a
//! renewed certificate, restart ([`unix`](crate::unix)): the successor
//! reads the files again, while the old process drains with the old one.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::conn::Transport;
use crate::runtime::Runtime;
use crate::worker::ServeConn;
use crate::worker::Worker;

/// The rustls version lameduck uses, for building a [`ServerConfig`] of
/// your own ([`TlsAcceptor::from_config`]).
pub use futures_rustls::rustls;

/// The protocols a [`TlsAcceptor`] offers by ALPN, in order of preference.
pub const ALPN_PROTOCOLS: &[&[u8]] = &[b"h2", b"http/1.1"];

/// What a server's TCP connections speak TLS with: a rustls
/// [`ServerConfig`] (certificate, protocols, ALPN). Cheap to clone.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
/// # let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
/// let acceptor = lameduck::tls::TlsAcceptor::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
/// assert_eq!(acceptor.config().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    /// Reads a PEM certificate chain (the server's certificate first, then
    /// its intermediates) and a PEM private key (PKCS#8, PKCS#1 or SEC1)
    /// from files. TLS 1.2 and 1.3, rustls' `ring` provider, ALPN
    /// [`ALPN_PROTOCOLS`].
    ///
    /// Fails with a message naming the file and what is wrong: missing or
    /// unreadable, no certificate or no key in it, not PEM, or a key that
    /// does not match the certificate.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsAcceptor, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                TlsError::new(format!("reading the {what} from {}: {e}", path.display()))
            })
        };
        let chain = certs(&read(cert, "TLS certificate chain")?, &cert.display())?;
        let key = private_key(&read(key, "TLS private key")?, &key.display())?;
        Self::from_parts(chain, key)
    }

    /// [`from_pem_files`](Self::from_pem_files) with the PEM text at hand.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, TlsError> {
        let chain = certs(cert_pem, &"the certificate PEM")?;
        let key = private_key(key_pem, &"the private key PEM")?;
        Self::from_parts(chain, key)
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(format!("TLS protocol versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                TlsError::new(format!(
                    "the TLS certificate and private key do not go together: {e}"
                ))
            })?;
        Ok(TlsAcceptor::from_config(config))
    }

    /// Uses `config` as it is (client authentication, session resumption,
    /// a certificate resolver of your own ...), except that a config
    /// offering no ALPN protocol is given [`ALPN_PROTOCOLS`].
    #[must_use]
    pub fn from_config(mut config: ServerConfig) -> TlsAcceptor {
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        }
        TlsAcceptor {
            config: Arc::new(config),
        }
    }

    /// The rustls configuration in use.
    #[must_use]
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// Every certificate in `pem`, in order; at least one.
fn certs(pem: &[u8], source: &dyn fmt::Display) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(format!("{source}: not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::new(format!(
            "{source}: no certificate in it (expected a PEM 'BEGIN CERTIFICATE' section)"
        )));
    }
    Ok(chain)
}

/// The first private key in `pem`.
fn private_key(pem: &[u8], source: &dyn fmt::Display) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::new(format!(
            "{source}: no private key in it (expected a PEM 'BEGIN PRIVATE KEY' section, \
             or an RSA or EC one)"
        )),
        e => TlsError::new(format!("{source}: not a PEM private key: {e}")),
    })
}

/// Why a [`TlsAcceptor`] could not be made; its message says which file
/// and what is wrong.
///
/// ```
/// let error = lameduck::tls::TlsAcceptor::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
///     .unwrap_err();
/// assert!(error.to_string().contains("/nonexistent/cert.pem"), "{error}");
/// ```
#[derive(Debug)]
pub struct TlsError {
    message: String,
}

impl TlsError {
    fn new(message: String) -> TlsError {
        TlsError { message }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

// ----- serving -----------------------------------------------------------------

/// Serves TCP connections through TLS, then with `inner`; others (Unix,
/// handed in) with `inner` directly.
pub(crate) struct Secured<R: Runtime> {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) inner: Arc<dyn ServeConn<R>>,
}

impl<R: Runtime> ServeConn<R> for Secured<R> {
    fn serve(&self, worker: &Arc<Worker<R>>, io: Transport<R>) {
        let Transport::Plain(conn) = io else {
            return self.inner.serve(worker, io);
        };
        if !conn.is_tcp() {
            return self.inner.serve(worker, Transport::Plain(conn));
        }
        let config = self.acceptor.config.clone();
        let inner = self.inner.clone();
        let task_worker = worker.clone();
        worker.rt.spawn(async move {
            if let Some(tls) = crate::conn::handshake(config, conn).await {
                inner.serve(&task_worker, Transport::Tls(Box::new(tls)));
            }
        });
    }
}
