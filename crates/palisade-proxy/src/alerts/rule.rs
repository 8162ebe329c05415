//! What a generated alerting rule is made of: the alert it raises (name, runbook
//! section), its expression, how long it must hold, its severity and its texts.

/// Every alert `palisade alerts` can write; each has a section in docs/RUNBOOKS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alert {
    /// A breaker has been open (or probing half-open) too long.
    CircuitOpen,
    /// A route spends its error budget fast enough to be gone in about two days.
    ErrorBudgetFastBurn,
    /// A route spends its error budget fast enough to be gone in about five days.
    ErrorBudgetSlowBurn,
    /// The retry budget keeps refusing retries.
    RetryBudgetExhausted,
    /// The bulkhead's slots stay (nearly) all taken, or it refuses requests.
    BulkheadSaturated,
    /// The rate limiter refuses a share of the requests.
    RateLimited,
    /// Load shedding keeps dropping requests.
    LoadShedding,
    /// Every endpoint of an upstream fails its health checks.
    NoHealthyEndpoint,
    /// A saga waits for an operator.
    SagaParked,
}

// === impl Alert ===

impl Alert {
    /// Every alert.
    pub const ALL: [Alert; 9] = [
        Alert::CircuitOpen,
        Alert::ErrorBudgetFastBurn,
        Alert::ErrorBudgetSlowBurn,
        Alert::RetryBudgetExhausted,
        Alert::BulkheadSaturated,
        Alert::RateLimited,
        Alert::LoadShedding,
        Alert::NoHealthyEndpoint,
        Alert::SagaParked,
    ];

    /// The alert's name (`alertname`).
    pub const fn name(self) -> &'static str {
        match self {
            Alert::CircuitOpen => "PalisadeCircuitOpen",
            Alert::ErrorBudgetFastBurn => "PalisadeErrorBudgetFastBurn",
            Alert::ErrorBudgetSlowBurn => "PalisadeErrorBudgetSlowBurn",
            Alert::RetryBudgetExhausted => "PalisadeRetryBudgetExhausted",
            Alert::BulkheadSaturated => "PalisadeBulkheadSaturated",
            Alert::RateLimited => "PalisadeRateLimited",
            Alert::LoadShedding => "PalisadeLoadShedding",
            Alert::NoHealthyEndpoint => "PalisadeNoHealthyEndpoint",
            Alert::SagaParked => "PalisadeSagaParked",
        }
    }

    /// Its section's anchor in docs/RUNBOOKS.md (GitHub's, of the heading `### {name}`).
    pub fn anchor(self) -> String {
        self.name().to_ascii_lowercase()
    }
}

/// How urgent: the `severity` label, for routing in Alertmanager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Wake someone: users are failing now.
    Critical,
    /// Look today: resilience is spending its margin.
    Warning,
}

impl Severity {
    /// The label's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// One alerting rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// What it raises.
    pub alert: Alert,
    /// The PromQL expression; every series it returns is an alert.
    pub expr: String,
    /// How long the expression must hold before the alert fires (`for:`); none: at once.
    pub hold: Option<&'static str>,
    /// How urgent.
    pub severity: Severity,
    /// Labels naming what it is about (`upstream`, `route`, `saga`).
    pub labels: Vec<(&'static str, String)>,
    /// One line: what is wrong (Prometheus template syntax allowed).
    pub summary: String,
    /// What it means and where to look first.
    pub description: String,
}

/// A named group of rules, as Prometheus loads them.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Unique in the file.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}
