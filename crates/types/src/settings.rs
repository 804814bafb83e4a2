//! Settings read out of a function's labels or annotations (scaling,
//! retries): a value is trimmed, an empty one is absent, and a value that
//! cannot be read is an error naming `labels.<key>` or `annotations.<key>`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::invalid::InvalidDeployment;

pub(crate) struct Settings<'a> {
    /// `labels` or `annotations`.
    field: &'static str,
    map: &'a BTreeMap<String, String>,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(field: &'static str, map: &'a BTreeMap<String, String>) -> Settings<'a> {
        Settings { field, map }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.map.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub(crate) fn invalid(&self, key: &str, message: String) -> InvalidDeployment {
        InvalidDeployment { field: format!("{}.{key}", self.field), message }
    }

    /// A whole number in `range`; `what` ends the error ("is not a whole
    /// number {what}").
    pub(crate) fn whole(
        &self,
        key: &str,
        range: RangeInclusive<u64>,
        what: &str,
    ) -> Result<Option<u64>, InvalidDeployment> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(self.invalid(key, format!("{v:?} is not a whole number {what}"))),
        }
    }

    /// A duration; `examples` end the error ("such as {examples}").
    pub(crate) fn duration(&self, key: &str, examples: &str) -> Result<Option<Duration>, InvalidDeployment> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match crate::duration::parse(v) {
            Some(d) => Ok(Some(d)),
            None => Err(self.invalid(key, format!("{v:?} is not a duration such as {examples}"))),
        }
    }
}
