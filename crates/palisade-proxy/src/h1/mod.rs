//! HTTP/1 on both sides of the proxy: the client that writes requests to upstreams and
//! reads their responses (`client`), the server front that reads clients' requests and
//! writes the answers (`server`), and the header-line writing both share (`wire`).
//!
//! Both sides parse heads with httparse and frame bodies by RFC 9112 §6; hop-by-hop
//! headers are those of `palisade_http::headers`. What each side refuses, and with what
//! answer, is listed in its module doc.

pub(crate) mod client;
pub(crate) mod rewind;
pub(crate) mod server;
pub(crate) mod wire;
