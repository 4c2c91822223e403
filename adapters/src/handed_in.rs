//! Serving a connection accepted elsewhere — handed in through
//! [`Handle::serve_io`] — as one accepted by the server.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_lite::io::{AsyncRead, AsyncWrite};
use lameduck_core::ConnId;

use crate::control::Control;
use crate::driver::Order;
use crate::handle::Handle;

impl Handle {
    /// Serves a connection accepted elsewhere — by a listener of your own, a
    /// TLS acceptor, an in-memory pipe — exactly as the server serves its
    /// own accepted connections: with the same HTTP/1.1 or raw-stream
    /// handler, the same tracking, timeouts, connection limit and drain.
    /// Returns the connection's id; the connection runs in a task of its
    /// own.
    ///
    /// The stream is any `futures-io` duplex stream. Closing it gently (at
    /// the drain, after a timeout) calls its `poll_close` — the write half's
    /// shutdown — then reads and discards what the peer still sends, up to
    /// 500 ms, like an accepted socket's FIN.
    ///
    /// Handed-in connections count as accepted on one extra listener that
    /// the server registers the first time; it closes, like every listener,
    /// when the drain begins.
    ///
    /// # Errors
    ///
    /// The stream is dropped (closed) unserved, and the error says why:
    /// - [`io::ErrorKind::NotConnected`]: the server is not serving yet
    ///   (call after [`Server::serve_http`](crate::Server::serve_http) or
    ///   [`Server::serve_stream`](crate::Server::serve_stream));
    /// - [`io::ErrorKind::Other`] carrying a [`lameduck_core::Error`]
    ///   (`e.get_ref()` downcasts to it):
    ///   [`ServerClosed`](lameduck_core::Error::ServerClosed) once the drain
    ///   has begun, [`AtCapacity`](lameduck_core::Error::AtCapacity) at
    ///   [`Config::max_connections`](lameduck_core::Config::max_connections)
    ///   (the server's own listeners wait in the backlog instead; a caller
    ///   with its own listener decides whether to wait or refuse).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::net::TcpListener;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{Request, Response, body::Incoming};
    ///
    /// async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    ///     Ok(Response::new(Full::new(Bytes::from("hello"))))
    /// }
    ///
    /// # fn main() -> std::io::Result<()> {
    /// // A server with no listener of its own: connections come from ours.
    /// let handle = lameduck::Builder::new().build()?.serve_http(hello);
    /// let listener = smol::Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// let addr = listener.get_ref().local_addr()?;
    /// let client = std::thread::spawn(move || {
    ///     use std::io::{Read, Write};
    ///     let mut s = std::net::TcpStream::connect(addr).unwrap();
    ///     s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    ///     let mut response = String::new();
    ///     s.read_to_string(&mut response).unwrap();
    ///     response
    /// });
    /// let (stream, _) = smol::block_on(listener.accept())?;
    /// let id = handle.serve_io(stream)?;
    /// let response = client.join().unwrap();
    /// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{id}: {response}");
    /// assert!(response.ends_with("hello"));
    ///
    /// handle.shutdown(None);
    /// let refused = handle.serve_io(futures_lite::io::Cursor::new(Vec::new())).unwrap_err();
    /// assert_eq!(
    ///     refused.get_ref().and_then(|e| e.downcast_ref::<lameduck::Error>()),
    ///     Some(&lameduck::Error::ServerClosed),
    /// );
    /// # Ok(()) }
    /// ```
    pub fn serve_io<S>(&self, io: S) -> io::Result<ConnId>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let driver = self.next_member();
        if !driver.serving.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server is not serving yet",
            ));
        }
        let listener = {
            let mut listener = crate::sync::lock(&driver.handed_in_listener);
            match *listener {
                Some(id) => id,
                None => {
                    let id = driver
                        .input(|core, _| core.add_listener())
                        .map_err(io::Error::other)?;
                    *listener = Some(id);
                    id
                }
            }
        };
        let control = Arc::new(Control::default());
        let conn = driver
            .accept(listener, control.clone())
            .map_err(io::Error::other)?;
        // The worker serves it on the server's runtime. It takes orders
        // until the core is done, which cannot happen while this
        // connection is tracked.
        driver.order(Order::ServeHandedIn {
            conn,
            control,
            io: Box::new(io),
        });
        Ok(conn)
    }
}
