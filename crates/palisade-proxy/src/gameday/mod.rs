//! `palisade gameday`: runs a chaos experiment from one file — targets, load, a timeline
//! of faults, hypotheses with verdicts — and leaves nothing behind.

pub mod journal;
pub mod report;
