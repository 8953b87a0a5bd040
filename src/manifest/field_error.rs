//! One broken rule of a manifest, with the field it concerns: what validation and the
//! support tables report. Its own file so both import it from below.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, as written in the manifest; empty for the manifest as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn unsupported(field: impl Into<String>) -> Self {
        Self::new(field, "not supported by hostlet yet")
    }
    pub(super) fn api_reference(field: impl Into<String>, resource: &str) -> Self {
        Self::new(field, format!("static pods may not reference {resource}"))
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}
