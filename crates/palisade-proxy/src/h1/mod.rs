//! HTTP/1 on both sides of the proxy: the client that writes requests to upstreams and
//! reads their responses (`client`), the server front that reads clients' requests and
//! writes the answers (`server`), and the pieces both share: message framing both ways
//! (`framing`), header-line writing (`wire`), a stream with bytes put back in front
//! (`rewind`), early hints passed from one side to the other (`interim`).
//!
//! One parser on both sides, httparse (hyper's): the own server reads request heads with
//! it and takes only bodiless keep-alive requests (every other request is handed, bytes
//! intact, to hyper's server); the client reads response heads with it
//! (`client::response::tokenize`) and then either keeps their lines for the own server to
//! write through (`client::raw`) or, for the rare head that needs it, puts them in a map
//! (`client::head`); both give the same framing (`client::raw`'s property test).
//! Hop-by-hop headers are those of `palisade_http::headers`, on both sides. Both sides
//! are held to hyper's reading of the same bytes (`differential`): whenever both read a
//! response they read the same status and body, the sidecar reads nothing hyper refuses,
//! and every request head the own server takes, hyper takes alike and without a body.
//! Three disagreements it found were fixed, each held by a named test: an HTTP/1.0
//! response with a transfer coding, chunk lines that end in a bare LF or carry a stray CR
//! or whitespace before the size, and `Transfer-Encoding: chunked,` (an empty element).
//!
//! # What is refused, and the limits
//!
//! An ambiguous request is never forwarded with another boundary; a broken response
//! fails its exchange (502, `x-palisade-reason: upstream-error`) and its connection is
//! never reused. Each line names the test that holds it.
//!
//! From clients:
//! - a head over `listener.max_header_bytes` (64 KiB): 431 —
//!   `tests/bad_input.rs::headers_over_the_limit_are_431`;
//! - a malformed head, or `Content-Length` beside `Transfer-Encoding`: 400 —
//!   `malformed_http_is_400_and_the_proxy_stays_up`;
//! - two `Host` headers, bytes beyond ASCII in the target: 400, never forwarded —
//!   `ambiguous_heads_are_400_and_never_forwarded`; an absolute-form target's authority
//!   replaces `Host` — `an_absolute_form_target_names_the_host_sent_upstream`;
//! - a malformed chunked body: 400 `bad-request` —
//!   `a_malformed_chunked_body_is_the_clients_fault`;
//! - a body over `listener.max_body_bytes` (10 MiB): 413 —
//!   `bodies_over_the_limit_are_413`;
//! - a body stalled for `listener.body_timeout`: 408, holding no slot —
//!   `tests/slow_bodies.rs::stalled_uploads_hold_no_slot_and_are_answered_408`;
//! - no whole head within `listener.header_timeout`: closed —
//!   `tests/head_timeout.rs::a_slow_second_head_is_cut_off`,
//!   `a_client_sending_headers_too_slowly_is_cut_off`;
//! - a client that stops reading its answer for `listener.body_timeout`: closed —
//!   `a_client_that_stops_reading_is_cut_and_frees_its_slot`.
//!
//! What a client may do and is served: `Upgrade` (WebSocket) is tunnelled to an endpoint
//! (`tests/upgrades.rs::a_websocket_upgrade_is_tunnelled_to_the_endpoint`);
//! `Expect: 100-continue` is answered before the body is sent
//! (`expect_100_continue_is_answered_before_the_body_is_sent`); pipelined requests are
//! answered in order (`tests/http1_server.rs::pipelined_requests_are_answered_in_order`);
//! a half-close after the request is answered
//! (`a_client_that_half_closes_after_its_request_is_answered`).
//!
//! From upstreams (`client/tests.rs` unless named):
//! - a status line that is not HTTP/1.0 or 1.1 with three digits, a folded header, a
//!   line without a colon, conflicting or invalid `Content-Length`, a bad chunk size,
//!   chunk data longer than its size, a body cut short —
//!   `malformed_heads_and_chunks_are_refused`;
//! - an invalid header name or value (control characters) —
//!   `client/raw.rs::invalid_lines_are_refused_and_a_partial_head_waits`;
//! - a head over 256 KiB, however it arrived —
//!   `a_head_over_the_limit_is_refused_even_when_it_arrived_whole`;
//! - more than 100 headers — `more_than_100_response_headers_are_refused`;
//! - a transfer coding other than `chunked` (it would reach the client undeclared) —
//!   `a_transfer_coding_other_than_chunked_is_refused`; any transfer coding in an
//!   HTTP/1.0 response (faulty framing, RFC 9112 §6.1) —
//!   `differential.rs::an_http_1_0_response_with_a_transfer_coding_is_refused`;
//! - a chunk-size or trailer line not ended by CRLF, with a CR inside, or with anything
//!   before the size or other than spaces and tabs after it; a coding list with an empty
//!   element (`chunked,`) — `differential.rs::chunk_lines_that_hyper_refuses_are_refused`,
//!   `a_coding_list_ending_in_an_empty_element_is_not_read_two_ways`;
//! - a chunk-size or trailer line over 4 KiB —
//!   `a_chunk_line_longer_than_4_kib_fails_the_body`; more than 100 trailer lines, a
//!   folded or invalid one — `a_folded_invalid_or_endless_trailer_section_fails_the_body`;
//! - `101 Switching Protocols` on a pooled connection —
//!   `a_switch_of_protocols_on_a_pooled_connection_is_refused`;
//! - a response body idle for `[upstream.timeout] body_idle`: cut —
//!   `tests/slow_bodies.rs::an_upstream_stalling_mid_body_is_cut_and_frees_its_slot`.
//!
//! Relayed with repairs: `Content-Length` beside `Transfer-Encoding` is dropped and the
//! connection not reused; equal `Content-Length` lines go as one; a 204's length is
//! dropped (`content_length_is_relayed_once_and_never_beside_a_coding_or_on_a_204`);
//! interim 1xx answers are skipped (`a_chunked_answer_streams_and_then_frees_its_connection`)
//! but `103 Early Hints`, written to a client the own server serves (`interim`;
//! `tests/http1_server.rs::early_hints_are_relayed_before_the_final_answer`);
//! an early final answer to a request whose body is still going out stops the sending
//! and is relayed (`an_early_final_answer_stops_the_body_and_is_relayed`); trailers are
//! passed on without the fields trailers may not carry
//! (`trailers_are_passed_on_without_the_fields_trailers_may_not_carry`,
//! `tests/http1_server.rs::trailers_are_relayed_after_a_chunked_body`).
//!
//! Kept per endpoint and worker: at most 256 idle connections, each at most 90 s
//! (`upstream::pool`).

pub(crate) mod client;
#[cfg(test)]
mod differential;
pub(crate) mod framing;
pub(crate) mod interim;
pub(crate) mod rewind;
pub(crate) mod server;
pub(crate) mod wire;
