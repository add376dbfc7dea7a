//! Errors printed with their causes.

use std::{error::Error as StdError, fmt};

/// An error with its causes, `a: b: c`, for logs and answers (`%err` alone
/// drops the causes).
pub fn chain(err: &dyn StdError) -> Chain<'_> {
    Chain(err)
}

pub struct Chain<'a>(&'a dyn StdError);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
