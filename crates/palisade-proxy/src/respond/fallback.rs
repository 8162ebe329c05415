//! A route's fallback: the fixed answer it gives when resilience gives up, explained
//! like every answer the proxy makes itself (`x-palisade-fallback: 1` and
//! `x-palisade-reason`), its headers built once per reason when the config loads.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use serde::Serialize;

use super::{FALLBACK, REASON, Reason, lines};
use crate::config::FallbackSection;

/// A fixed response.
#[derive(Clone, Debug, Serialize)]
pub struct Fallback {
    /// Its status.
    pub status: u16,
    /// Its body.
    #[serde(skip)]
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its headers for each reason (indexed by [`Reason::index`]), built once.
    #[serde(skip)]
    headers: Box<[HeaderMap]>,
    /// The same, as header lines (see [`Fallback::lines`]).
    #[serde(skip)]
    lines: Box<[Bytes]>,
}

impl Fallback {
    /// The headers of this fallback answering for `reason`: `x-palisade-fallback: 1`,
    /// `x-palisade-reason` and its `Content-Type`.
    pub fn headers(&self, reason: Reason) -> HeaderMap {
        match self.headers.get(reason.index()) {
            Some(headers) => headers.clone(),
            None => fallback_headers(&self.content_type, reason),
        }
    }
}

impl Fallback {
    /// [`Fallback::headers`] as header lines, for a connection that writes them as they
    /// are (see `h1::server`).
    pub fn lines(&self, reason: Reason) -> Bytes {
        match self.lines.get(reason.index()) {
            Some(lines) => lines.clone(),
            None => lines(&fallback_headers(&self.content_type, reason)),
        }
    }
}

fn fallback_headers(content_type: &str, reason: Reason) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(FALLBACK, HeaderValue::from_static("1"));
    headers.insert(REASON, HeaderValue::from_static(reason.as_str()));
    if let Ok(content_type) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, content_type);
    }
    headers
}

impl From<&FallbackSection> for Fallback {
    fn from(section: &FallbackSection) -> Self {
        Self {
            status: section.status,
            body: Bytes::from(section.body.clone()),
            content_type: section.content_type.clone(),
            headers: Reason::ALL
                .iter()
                .map(|&reason| fallback_headers(&section.content_type, reason))
                .collect(),
            lines: Reason::ALL
                .iter()
                .map(|&reason| lines(&fallback_headers(&section.content_type, reason)))
                .collect(),
        }
    }
}
