//! `palisade`: the sidecar's command line.

fn main() {}
