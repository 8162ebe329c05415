//! The dashboard's recent past: one point per second, oldest dropped first.
//!
//! Points are kept as the JSON they are sent as, so that `/dashboard/data.json` joins
//! them without encoding anything again. The ring is bounded twice: by points (15
//! minutes at one a second) and by bytes, so that a config with many upstreams cannot
//! grow it past [`MAX_BYTES`].

use std::collections::VecDeque;

use bytes::Bytes;

/// Points kept: 15 minutes at one a second.
pub const MAX_POINTS: usize = 15 * 60;
/// Bytes of JSON kept, at most.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The ring of points.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<Bytes>,
    bytes: usize,
}

// === impl History ===

impl History {
    /// Appends a point (a JSON object), dropping the oldest beyond either bound.
    pub fn push(&mut self, point: Bytes) {
        self.bytes += point.len();
        self.points.push_back(point);
        while self.points.len() > MAX_POINTS || (self.bytes > MAX_BYTES && self.points.len() > 1) {
            if let Some(oldest) = self.points.pop_front() {
                self.bytes -= oldest.len();
            }
        }
    }

    /// The points, oldest first, as one JSON array.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes + self.points.len() + 2);
        out.push(b'[');
        for (i, point) in self.points.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(point);
        }
        out.push(b']');
        out
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no point is held yet.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_fifteen_minutes() {
        let mut history = History::default();
        for t in 0..MAX_POINTS + 10 {
            history.push(Bytes::from(format!("{{\"t\":{t}}}")));
        }
        assert_eq!(history.len(), MAX_POINTS);
        let json: Vec<serde_json::Value> = serde_json::from_slice(&history.to_json()).unwrap();
        assert_eq!(json[0]["t"], 10, "the oldest were dropped");
        assert_eq!(json[MAX_POINTS - 1]["t"], MAX_POINTS + 9);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_too() {
        let mut history = History::default();
        let big = Bytes::from(vec![b' '; MAX_BYTES / 4]);
        for _ in 0..10 {
            history.push(big.clone());
        }
        assert_eq!(history.len(), 4);
        assert!(history.bytes <= MAX_BYTES);
    }

    #[test]
    fn an_empty_ring_is_an_empty_array() {
        assert_eq!(History::default().to_json(), b"[]");
    }
}
