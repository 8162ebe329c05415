//! The breaker's states and their packing into one atomic word.
//!
//! The word holds the state in its low 3 bits and a generation counter above them. Every
//! transition bumps the generation, so an outcome recorded by a call admitted under an
//! older generation (say, a slow call that started while closed and ended after the
//! breaker opened and closed again) is recognised and left out.

use serde::Serialize;

/// A circuit breaker's state.
///
/// Each variant's discriminant is its value in the `palisade_circuit_state` gauge
/// ([`gauge`](Self::gauge)): this enum is the one source of those numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum CircuitState {
    /// Calls flow; outcomes are recorded.
    Closed = 0,
    /// Calls are rejected until the open time ends.
    Open = 1,
    /// A few probe calls test the dependency.
    HalfOpen = 2,
    /// Held open by an operator; every call is rejected.
    ForcedOpen = 3,
    /// Held closed by an operator; every call is admitted and nothing trips.
    ForcedClosed = 4,
    /// Configured off; every call is admitted and nothing is recorded.
    Disabled = 5,
}

impl CircuitState {
    /// Every state, in gauge order.
    pub const ALL: [CircuitState; 6] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::ForcedClosed,
        CircuitState::Disabled,
    ];

    pub(crate) const fn code(self) -> u64 {
        self as u64
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::ForcedOpen,
            4 => CircuitState::ForcedClosed,
            _ => CircuitState::Disabled,
        }
    }

    /// The state's name in metrics labels and JSON (`"half-open"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
            CircuitState::ForcedOpen => "forced-open",
            CircuitState::ForcedClosed => "forced-closed",
            CircuitState::Disabled => "disabled",
        }
    }

    /// The value of the `palisade_circuit_state` gauge: the variant's discriminant.
    pub const fn gauge(self) -> f64 {
        self.code() as f64
    }
}

impl std::fmt::Display for CircuitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// A state and the generation it was entered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) const fn new(state: CircuitState, generation: u64) -> Self {
        Word((generation << STATE_BITS) | state.code())
    }

    pub(crate) const fn state(self) -> CircuitState {
        CircuitState::from_code(self.0 & STATE_MASK)
    }

    pub(crate) const fn generation(self) -> u64 {
        self.0 >> STATE_BITS
    }

    /// The word for entering `state` from this one.
    pub(crate) const fn next(self, state: CircuitState) -> Self {
        Word::new(state, self.generation().wrapping_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for state in CircuitState::ALL {
            let w = Word::new(state, 41);
            assert_eq!(w.state(), state);
            assert_eq!(w.generation(), 41);
            assert_eq!(w.next(CircuitState::Closed).generation(), 42);
        }
    }

    /// Every place that lists the gauge's values agrees with the enum.
    #[test]
    fn the_gauge_values_documented_are_the_enums() {
        let events = include_str!("../../events.rs");
        let at = events
            .find("pub const CIRCUIT_STATE")
            .expect("the metric's name is declared");
        let doc_start = events[..at]
            .rfind("pub const")
            .expect("a declaration before it");
        let metric_doc = &events[doc_start..at];
        let architecture = include_str!("../../../../../docs/ARCHITECTURE.md");
        let line = architecture
            .split("\n\n")
            .find(|paragraph| paragraph.contains("`palisade_circuit_state` is"))
            .expect("ARCHITECTURE.md lists the gauge's values");
        for text in [metric_doc, line] {
            let text = text.replace("///", " ").replace('\n', " ");
            let words: Vec<&str> = text.split_whitespace().collect();
            let mut listed = Vec::new();
            for pair in words.windows(2) {
                if let Ok(value) = pair[0].parse::<u64>() {
                    let name = pair[1].trim_end_matches([',', '.', ')']);
                    assert_eq!(
                        CircuitState::from_code(value).as_str(),
                        name,
                        "documented as {value}: {text}"
                    );
                    listed.push(value);
                }
            }
            let all: Vec<u64> = CircuitState::ALL.iter().map(|s| s.code()).collect();
            assert_eq!(listed, all, "every state listed once, in order: {text}");
        }
        for state in CircuitState::ALL {
            assert_eq!(state.gauge(), state as u8 as f64);
        }
    }
}
