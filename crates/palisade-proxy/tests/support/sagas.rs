//! The sidecar config of the saga tests: a checkout across two upstreams.

use super::Upstream;

/// A sidecar with a `checkout` saga (reserve at `inventory`, compensated by a DELETE;
/// charge at `payments`, compensated by a refund) on `/checkout`, logged in SQLite at
/// `store`, each upstream with `per_try` and no retries.
pub fn saga_config(
    inventory: &Upstream,
    payments: &Upstream,
    store: &std::path::Path,
    per_try: &str,
) -> String {
    format!(
        r#"
[[upstream]]
name = "inventory"
endpoints = ["{}"]
[upstream.timeout]
per_try = "{per_try}"
[upstream.retry]
max_attempts = 1

[[upstream]]
name = "payments"
endpoints = ["{}"]
[upstream.timeout]
per_try = "{per_try}"
[upstream.retry]
max_attempts = 1

[saga_store]
url = "sqlite://{}"

[[saga]]
name = "checkout"
compensation_retry = {{ max_attempts = 2, base = "20ms", max_delay = "50ms" }}
[[saga.step]]
name = "reserve"
upstream = "inventory"
method = "POST"
path = "/reservations"
compensate = {{ method = "DELETE", path = "/reservations/{{saga_id}}" }}
[[saga.step]]
name = "charge"
upstream = "payments"
method = "POST"
path = "/charges"
compensate = {{ method = "POST", path = "/refunds" }}

[[route]]
path_prefix = "/checkout"
saga = "checkout"
"#,
        inventory.addr(),
        payments.addr(),
        store.display()
    )
}
