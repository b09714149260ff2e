//! The structured result of a verification: every check that ran, its outcome and,
//! for a failure, whose fault it is (STYLE.md §8).

use serde::Serialize;
use std::borrow::Cow;

/// Whose fault a failed check is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The input is not well formed (sizes, versions, reserved bytes, DER, names).
    Malformed,
    /// A signature, chain, revocation, validity or key-binding check failed.
    Cryptography,
    /// The report is genuine but the relying party's policy rejects it.
    Policy,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Malformed => "malformed input",
            Fault::Cryptography => "cryptography",
            Fault::Policy => "policy",
        })
    }
}

/// Outcome of one check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Not applicable or not requested (does not make the verdict fail).
    Skip,
}

/// One check.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `report.signature`, `binding.tcb`, `policy.measurement`.
    pub id: &'static str,
    /// Outcome.
    pub outcome: Outcome,
    /// The class a failure of this check belongs to.
    pub fault: Fault,
    /// What was compared or why it failed.
    pub detail: Cow<'static, str>,
}

impl Check {
    /// A passing check.
    pub fn pass(id: &'static str, fault: Fault, detail: impl Into<Cow<'static, str>>) -> Self {
        Check {
            id,
            outcome: Outcome::Pass,
            fault,
            detail: detail.into(),
        }
    }
    /// A failing check.
    pub fn fail(id: &'static str, fault: Fault, detail: impl Into<Cow<'static, str>>) -> Self {
        Check {
            id,
            outcome: Outcome::Fail,
            fault,
            detail: detail.into(),
        }
    }
    /// A skipped check.
    pub fn skip(id: &'static str, fault: Fault, detail: impl Into<Cow<'static, str>>) -> Self {
        Check {
            id,
            outcome: Outcome::Skip,
            fault,
            detail: detail.into(),
        }
    }
    /// Pass if `ok`, else fail with `why`.
    pub fn cond(
        id: &'static str,
        fault: Fault,
        ok: bool,
        pass_detail: impl Into<Cow<'static, str>>,
        why: impl FnOnce() -> String,
    ) -> Self {
        if ok {
            Check::pass(id, fault, pass_detail)
        } else {
            Check::fail(id, fault, why())
        }
    }
}

/// Every check of one verification.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct Verdict {
    /// Product line the report was judged as.
    pub product: Option<softsev_abi::Product>,
    /// "VCEK" or "VLEK" when known.
    pub signer: Option<&'static str>,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every check passed or was skipped, and at least one ran.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }
    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Fail)
    }
    /// The first failed check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.failures().next()
    }
    /// Whether check `id` ran and failed.
    pub fn failed(&self, id: &str) -> bool {
        self.failures().any(|c| c.id == id)
    }
    /// The check with `id`.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
    /// Add a check.
    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
    }
    /// JSON object: `{ "passed", "product", "signer", "checks": [...] }`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed(),
            "product": self.product.map(|p| p.name()),
            "signer": self.signer,
            "checks": self.checks,
        })
    }
    /// A short table for people: one line per check.
    pub fn to_table(&self) -> String {
        let w = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = String::new();
        for c in &self.checks {
            let (mark, fault) = match c.outcome {
                Outcome::Pass => ("PASS", String::new()),
                Outcome::Skip => ("skip", String::new()),
                Outcome::Fail => ("FAIL", format!(" [{}]", c.fault)),
            };
            s.push_str(&format!("{mark}  {:<w$}  {}{fault}\n", c.id, c.detail));
        }
        let n_fail = self.failures().count();
        s.push_str(&if n_fail == 0 {
            format!(
                "OK: {} checks passed ({} skipped){}\n",
                self.checks
                    .iter()
                    .filter(|c| c.outcome == Outcome::Pass)
                    .count(),
                self.checks
                    .iter()
                    .filter(|c| c.outcome == Outcome::Skip)
                    .count(),
                self.product
                    .map(|p| format!(", {p} {}", self.signer.unwrap_or("")))
                    .unwrap_or_default()
            )
        } else {
            format!("FAILED: {n_fail} check(s) failed\n")
        });
        s
    }
}

/// Serialize optional bytes as lowercase hex.
pub(crate) fn ser_hex_opt<S: serde::Serializer>(
    v: &Option<Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_and_rendering() {
        let mut v = Verdict::default();
        assert!(!v.passed());
        v.push(Check::pass("a.b", Fault::Malformed, "ok"));
        v.push(Check::skip("c", Fault::Policy, "not requested"));
        assert!(v.passed());
        assert!(v.to_table().contains("OK: 1 checks passed (1 skipped)"));
        v.push(Check::cond("d", Fault::Policy, false, "", || "no".into()));
        assert!(!v.passed());
        assert!(v.failed("d") && !v.failed("a.b"));
        assert_eq!(v.first_failure().unwrap().id, "d");
        assert!(v.to_table().contains("FAIL  d      no [policy]"));
        let j = v.to_json();
        assert_eq!(j["passed"], false);
        assert_eq!(j["checks"][2]["fault"], "policy");
        assert_eq!(j["checks"][2]["outcome"], "fail");
    }
}
