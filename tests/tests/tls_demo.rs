//! The demo server over HTTPS, as a process test: `--tls-cert`/`--tls-key`
//! serve HTTPS (ALPN `h2` and `http/1.1`) to a rustls client, a
//! certificate renewed in place is put in service by a `SIGHUP` restart
//! (the successor reads the files again) while a request in flight on the
//! old process completes, and bad certificate arguments are refused.
#![cfg(feature = "tls")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use lameduck::tls::rustls::ClientConfig;
use lameduck_testkit::client::{Client, Ending};
use lameduck_testkit::tls::{ServerCert, TestCa, TlsStream, connect};
use lameduck_tests::load::scratch_dir;
use lameduck_tests::process::{
    Demo, EVENTUALLY, Signal, parse_first_line, send_signal, serve_binary, wait_exited,
};

/// Writes `cert` where the demo reads it, each file replaced whole (a
/// rename), as a certificate renewal would.
fn install_cert(cert: &ServerCert, cert_path: &Path, key_path: &Path) {
    for (text, path) in [(&cert.cert_pem, cert_path), (&cert.key_pem, key_path)] {
        let fresh = path.with_extension("new");
        std::fs::write(&fresh, text).expect("writing a PEM file");
        std::fs::rename(&fresh, path).expect("putting a PEM file in place");
    }
}

/// An HTTPS connection to the demo, checked to present `cert`.
fn https(addr: SocketAddr, config: &Arc<ClientConfig>, cert: &ServerCert) -> Client<TlsStream> {
    let mut client = connect(addr, config).expect("an HTTPS connection to the demo");
    let presented = client
        .stream_mut()
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first().cloned());
    assert_eq!(
        presented.as_ref(),
        Some(&cert.der),
        "the server's certificate"
    );
    client
}

/// `GET /pid` over a fresh HTTPS connection, until `pid` answers.
fn wait_https_serving(addr: SocketAddr, config: &Arc<ClientConfig>, pid: u32) -> Client<TlsStream> {
    let deadline = Instant::now() + EVENTUALLY;
    // One connection per pass; bounded by the deadline.
    loop {
        let mut client = connect(addr, config).expect("an HTTPS connection to the demo");
        let response = client.get("/pid").expect("GET /pid over HTTPS");
        if response.text() == pid.to_string() {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "/pid never answered {pid} over HTTPS: {response:?}"
        );
    }
}

/// HTTPS from the demo; a new certificate written to the same paths is
/// served after a `SIGHUP` (by the successor), while a request in flight
/// on the old process completes with `Connection: close` and
/// `close_notify`; both processes drain cleanly.
#[test]
fn https_and_certificate_reload_across_sighup() {
    let dir = scratch_dir("tls-reload");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ca = TestCa::new();
    let first = ca.issue("generation one");
    let second = ca.issue("generation two");
    install_cert(&first, &cert_path, &key_path);
    let http1 = ca.client_config(&[b"http/1.1"]);
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let addr = demo.tcp_addrs()[0];
    let old = demo.pid();

    let mut client = https(addr, &http1, &first);
    let response = client.get("/pid").unwrap();
    assert_eq!(response.text(), old.to_string(), "{response:?}");
    let mut h2 = connect(addr, &ca.client_config(&[b"h2", b"http/1.1"])).unwrap();
    assert_eq!(
        h2.stream_mut().conn.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN offers h2"
    );
    drop(h2);

    // In flight across the restart, on the old process.
    let mut in_flight = https(addr, &http1, &first);
    in_flight.send_get("/sleep?ms=1000").unwrap();
    install_cert(&second, &cert_path, &key_path);
    let stderr_from = demo.stderr_seen.len();
    send_signal(old, Signal::HUP);
    let (addrs, new) = parse_first_line(&demo.next_first_line());
    assert_eq!(addrs, [addr], "the successor serves the same socket");
    demo.wait_stderr_from(stderr_from, &format!("pid {old} handed off to pid {new}"));
    drop(wait_https_serving(addr, &http1, new));
    let mut renewed = https(addr, &http1, &second);
    assert_eq!(renewed.get("/").unwrap().text(), "hello");

    let response = in_flight.read_response().unwrap();
    assert_eq!(response.text(), "slept 1000", "{response:?}");
    assert!(response.connection_close(), "{response:?}");
    let (bytes, ending) = in_flight
        .read_until_closed()
        .expect("the old process ends the session with close_notify");
    assert_eq!((bytes.len(), ending), (0, Ending::Eof));
    wait_exited(old);
    demo.wait_stderr_from(stderr_from, "done: drained, forced=0");

    drop(renewed);
    let stderr_from = demo.stderr_seen.len();
    send_signal(new, Signal::TERM);
    wait_exited(new);
    demo.wait_stderr_from(stderr_from, "done: drained, forced=0");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Certificate arguments the demo cannot use: only one of the two is a
/// bad invocation (exit 2); files that are missing or hold no PEM
/// certificate or key are a start-up failure with a message (exit 1).
#[test]
fn bad_certificate_arguments_are_refused() {
    let dir = scratch_dir("tls-bad");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let cert = TestCa::new().issue("lone");
    let cert_only = dir.join("cert.pem");
    std::fs::write(&cert_only, &cert.cert_pem).unwrap();
    let missing = dir.join("missing.pem");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    for (args, code, says) in [
        (
            vec!["--tls-cert".to_owned(), path(&cert_only)],
            2,
            "--tls-cert needs --tls-key",
        ),
        (
            vec!["--tls-key".to_owned(), path(&cert_only)],
            2,
            "--tls-key needs --tls-cert",
        ),
        (
            vec![
                "--tls-cert".into(),
                path(&missing),
                "--tls-key".into(),
                path(&garbage),
            ],
            1,
            "missing.pem",
        ),
        (
            vec![
                "--tls-cert".into(),
                path(&garbage),
                "--tls-key".into(),
                path(&garbage),
            ],
            1,
            "no certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                path(&cert_only),
                "--tls-key".into(),
                path(&cert_only),
            ],
            1,
            "no private key",
        ),
    ] {
        let output = Command::new(serve_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("running the demo");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: it served: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
