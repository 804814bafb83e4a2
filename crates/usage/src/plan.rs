//! Price plans and bills: what a namespace pays per million invocations,
//! per GB-second and per CPU-second, after a free tier each month.

use serde::{Deserialize, Serialize};

use crate::{MIB_US_PER_GB_S, Sums, US};

/// The plan of a namespace. Prices are in `currency` units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    #[serde(default)]
    pub per_million_invocations: f64,
    #[serde(default)]
    pub per_gb_second: f64,
    #[serde(default)]
    pub per_cpu_second: f64,
    /// Free each calendar month (UTC).
    #[serde(default)]
    pub free_invocations: u64,
    #[serde(default)]
    pub free_gb_seconds: f64,
    #[serde(default)]
    pub free_cpu_seconds: f64,
    #[serde(default = "usd")]
    pub currency: String,
}

fn usd() -> String {
    "USD".to_owned()
}

impl Default for Plan {
    /// Free of charge: usage is metered, nothing is priced.
    fn default() -> Plan {
        Plan {
            per_million_invocations: 0.0,
            per_gb_second: 0.0,
            per_cpu_second: 0.0,
            free_invocations: 0,
            free_gb_seconds: 0.0,
            free_cpu_seconds: 0.0,
            currency: usd(),
        }
    }
}

/// Largest price or free amount a plan may name: past it, a typo.
const MAX_AMOUNT: f64 = 1e12;

impl Plan {
    /// Checks every figure; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, v) in [
            ("perMillionInvocations", self.per_million_invocations),
            ("perGbSecond", self.per_gb_second),
            ("perCpuSecond", self.per_cpu_second),
            ("freeGbSeconds", self.free_gb_seconds),
            ("freeCpuSeconds", self.free_cpu_seconds),
        ] {
            if !v.is_finite() || !(0.0..=MAX_AMOUNT).contains(&v) {
                return Err(format!("{field}: {v} is not an amount from 0 to {MAX_AMOUNT}"));
            }
        }
        let c = &self.currency;
        if c.is_empty() || c.len() > 8 || !c.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("currency: {c:?} is not a currency code such as USD or EUR"));
        }
        Ok(())
    }

    /// The price of `sums`, no free tier taken off (a report's rows).
    pub fn gross(&self, sums: &Sums) -> f64 {
        round(
            sums.invocations as f64 / 1e6 * self.per_million_invocations
                + sums.gb_seconds() * self.per_gb_second
                + sums.cpu_seconds() * self.per_cpu_second,
        )
    }

    /// A month's bill of `sums`, the free tier taken off.
    pub fn bill(&self, sums: &Sums) -> Bill {
        let free_mib_us = (self.free_gb_seconds * MIB_US_PER_GB_S) as u64;
        let free_cpu_us = (self.free_cpu_seconds * US) as u64;
        let billable_invocations = sums.invocations.saturating_sub(self.free_invocations);
        let billable_mib_us = sums.mib_us.saturating_sub(free_mib_us);
        let billable_cpu_us = sums.cpu_us.saturating_sub(free_cpu_us);
        let line = |item, used, free, billable: f64, unit_price: f64| BillLine {
            item,
            used,
            free,
            billable,
            unit_price,
            amount: round(billable * unit_price),
        };
        let lines = vec![
            line(
                "invocations",
                sums.invocations as f64,
                self.free_invocations as f64,
                billable_invocations as f64,
                self.per_million_invocations / 1e6,
            ),
            line(
                "gb-seconds",
                sums.gb_seconds(),
                self.free_gb_seconds,
                billable_mib_us as f64 / MIB_US_PER_GB_S,
                self.per_gb_second,
            ),
            line(
                "cpu-seconds",
                sums.cpu_seconds(),
                self.free_cpu_seconds,
                billable_cpu_us as f64 / US,
                self.per_cpu_second,
            ),
        ];
        let total = round(lines.iter().map(|l| l.amount).sum());
        Bill { currency: self.currency.clone(), lines, total }
    }
}

/// Money to a millionth of a unit.
fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bill {
    pub currency: String,
    pub lines: Vec<BillLine>,
    pub total: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillLine {
    pub item: &'static str,
    pub used: f64,
    pub free: f64,
    pub billable: f64,
    pub unit_price: f64,
    pub amount: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entry;

    fn plan() -> Plan {
        serde_json::from_str(
            r#"{"perMillionInvocations":0.2,"perGbSecond":0.0000166667,"freeInvocations":1000000,
                "freeGbSeconds":400000}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_bill_takes_the_free_tier_off() {
        // Lambda's example: 3M calls of 1 s at 512 MiB.
        let mut s = Sums::default();
        let mut r = crate::record("a", 0, 1_000_000);
        r.memory_mib = 512;
        for _ in 0..3 {
            let mut one = Sums::default();
            one.add(&Entry::Call(r.clone()));
            for _ in 0..20 {
                one.merge(&one.clone());
            }
            s.merge(&one);
        }
        // 3 * 2^20 calls.
        assert_eq!(s.invocations, 3 * (1 << 20));
        let bill = plan().bill(&s);
        let gb_s = 3.0 * 1048576.0 * 0.5;
        assert_eq!(bill.lines[1].used, gb_s);
        assert_eq!(bill.lines[1].amount, round((gb_s - 400000.0) * 0.0000166667));
        assert_eq!(bill.lines[0].amount, round((3.0 * 1048576.0 - 1e6) / 1e6 * 0.2));
        assert_eq!(bill.total, round(bill.lines[0].amount + bill.lines[1].amount));
        assert_eq!(plan().bill(&s), bill, "the same sums, the same bill");
        let none = plan().bill(&Sums::default());
        assert_eq!(none.total, 0.0);
    }

    #[test]
    fn plans_are_checked() {
        assert!(plan().validate().is_ok());
        let bad = Plan { per_gb_second: -1.0, ..plan() };
        assert!(bad.validate().unwrap_err().starts_with("perGbSecond"));
        let bad = Plan { free_cpu_seconds: f64::NAN, ..plan() };
        assert!(bad.validate().is_err());
        let bad = Plan { currency: "<b>".into(), ..plan() };
        assert!(bad.validate().unwrap_err().starts_with("currency"));
        assert!(serde_json::from_str::<Plan>(r#"{"perGbSec":1}"#).is_err(), "unknown fields");
    }
}
