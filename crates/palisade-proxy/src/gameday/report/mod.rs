//! The reports made from a game day's journal: JUnit XML for CI so far.
//!
//! A report is a pure function of the [`Journal`](super::journal::Journal), so it can be
//! written again from a saved journal. Nothing here trusts the journal's text: every
//! string is escaped where it is written (text.rs).

pub mod junit;
#[cfg(test)]
mod sample;
mod text;

pub use junit::junit;
