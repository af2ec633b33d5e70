//! The machine API key, held as a reference so the config file can be
//! shared. Its value is read only when a daemon (or a unit that must embed
//! it) needs it, and it never reaches any output: `Debug` and `Display`
//! print `(sensitive)`.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where the API key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
    Inline(Secret),
}

impl SecretRef {
    /// How the key is referenced, without its value, for plan/status output.
    pub fn describe(&self) -> String {
        match self {
            Self::File(_) => "file named by api_key_file".to_string(),
            Self::Env(v) => format!("environment variable {v}"),
            Self::Inline(_) => "inline (sensitive)".to_string(),
        }
    }

    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            Self::Inline(s) => Ok(s.clone()),
            Self::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
                _ => Err(SecretError::EnvUnset(var.clone())),
            },
            Self::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SecretError::File { source })?;
                let value = text.trim();
                if value.is_empty() {
                    return Err(SecretError::FileEmpty);
                }
                Ok(Secret(value.to_string()))
            }
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A secret value. Only `expose()` gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("environment variable {0} (api_key_env) is not set or empty")]
    EnvUnset(String),
    // The path is not shown: it is the value of an api_key* key, and users
    // paste the key itself there.
    #[error("api_key_file: cannot read the file (value not shown): {source}")]
    File { source: std::io::Error },
    #[error("api_key_file: the file is empty (value not shown)")]
    FileEmpty,
}

/// An environment variable name as `api_key_env` accepts it.
pub fn valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = SecretRef::Inline(Secret::new("sk_machine_topsecret"));
        assert!(!format!("{s:?}").contains("topsecret"));
        assert!(!format!("{:?}", Secret::new("sk_machine_topsecret")).contains("topsecret"));
        assert!(
            !Secret::new("sk_machine_topsecret")
                .to_string()
                .contains("topsecret")
        );
    }

    #[test]
    fn env_names() {
        assert!(valid_env_name("CLOUDAGENT_KEY"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("sk_machine-abc"));
        assert!(!valid_env_name(""));
    }
}
