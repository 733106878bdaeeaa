//! An error and its causes, each said once. The crate's errors follow the
//! Rust convention: a message says what failed and where, and its cause is
//! returned by `source()`, never repeated in the message; the engine's and
//! the Parquet, Arrow and object-store crates' errors print their own causes
//! in their messages, so the walk stops after the first of those.

use std::error::Error;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;

/// The message of `error`, then those of its causes, in order.
pub fn causes(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        messages.push(error.to_string());
        if prints_its_causes(error) {
            break;
        }
        current = error.source();
    }
    messages
}

/// `error` and its causes on one line, `what: why: why`, for logs and
/// summaries that have one line per failure.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    causes(error).join(": ")
}

/// Errors of other crates whose message already includes their causes.
fn prints_its_causes(error: &(dyn Error + 'static)) -> bool {
    error.is::<DataFusionError>()
        || error.is::<ArrowError>()
        || error.is::<ParquetError>()
        || error.is::<object_store::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading inputs")]
    struct Outer {
        #[source]
        source: DataFusionError,
    }

    #[test]
    fn each_cause_once_and_foreign_messages_whole() {
        let inner = DataFusionError::External(Box::new(std::io::Error::other("disk gone")));
        let outer = Outer { source: inner };
        let messages = causes(&outer);
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0], "reading inputs");
        assert!(messages[1].contains("disk gone"), "{messages:?}");
        assert_eq!(one_line(&outer), format!("reading inputs: {}", messages[1]));
    }
}
