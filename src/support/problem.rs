//! A configuration problem found while validating one value: what is wrong, and which
//! production-checklist item it breaks. Every config type's `validate` returns these; the config
//! loader adds where the file came from.

/// The checklist item a config problem belongs to (for `check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemCategory {
    /// A secret written inline in the file.
    InlineSecret,
    /// A non-HTTPS endpoint.
    InsecureEndpoint,
    /// Anything else.
    Invalid,
}

/// What is wrong with one value, naming its key path. Never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Problem {
    /// What is wrong, naming the key path.
    pub message: String,
    /// Which checklist item it breaks.
    pub category: ProblemCategory,
}

impl Problem {
    /// An invalid value.
    pub fn invalid(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            category: ProblemCategory::Invalid,
        }
    }

    /// A plain-HTTP (or otherwise insecure) endpoint.
    pub fn insecure(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            category: ProblemCategory::InsecureEndpoint,
        }
    }

    /// A secret written inline.
    pub fn inline_secret(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            category: ProblemCategory::InlineSecret,
        }
    }

    /// `{at}.{key} is empty` for the first optional value that is given but blank.
    pub fn no_blank(at: &str, values: &[(&str, Option<&str>)]) -> Result<(), Problem> {
        match values
            .iter()
            .find(|(_, v)| v.is_some_and(|v| v.trim().is_empty()))
        {
            Some((key, _)) => Err(Problem::invalid(format!("{at}.{key} is empty"))),
            None => Ok(()),
        }
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Problem::invalid(message)
    }
}
