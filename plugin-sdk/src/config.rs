//! The plugin's configuration: the connector config's `[plugins.<name>.config]` as JSON.

use serde::de::DeserializeOwned;

use crate::Error;

/// A plugin's configuration, parsed on demand into the plugin's own serde type.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    value: serde_json::Value,
}

impl Config {
    /// Parses the JSON text the host sends (`null` when nothing is configured).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let value = serde_json::from_str(text)
            .map_err(|e| Error::config(format!("config is not JSON: {e}")))?;
        Ok(Self { value })
    }

    /// Wraps a JSON value (handy in tests: `Config::from(serde_json::json!({..}))`).
    pub fn from_value(value: serde_json::Value) -> Self {
        Self { value }
    }

    /// The raw JSON value.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// Deserializes the config into `T`; no config at all parses as an empty table, so a `T`
    /// whose fields all have defaults works without any config.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let value = match &self.value {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v.clone(),
        };
        serde_json::from_value(value).map_err(|e| Error::config(e.to_string()))
    }
}

impl From<serde_json::Value> for Config {
    fn from(value: serde_json::Value) -> Self {
        Self::from_value(value)
    }
}
