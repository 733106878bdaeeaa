//! Exit statuses: what a failed command tells its scheduler, one meaning per
//! code (docs/design.md §6; the table in docs/reference/cli.md). Every error
//! type maps itself to one of these with an `exit_status()` method; the
//! command line turns it into the process's exit code in one place.

/// The exit status of a `segments` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: anything else: a bug, an engine failure, a live lease held by
    /// another run of the same period.
    Internal,
    /// 2: the job or config (or an argument) is invalid: fix it, do not
    /// retry.
    Invalid,
    /// 3: the input failed (unreadable, missing column, a data-quality gate):
    /// nothing is published; fix the data.
    InputFailed,
    /// 4: storage failed after the retries (credentials, bucket, network):
    /// nothing is published.
    Storage,
    /// 5: the inputs are not ready yet (`readiness`): retry later.
    NotReady,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Internal => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::InputFailed => 3,
            ExitStatus::Storage => 4,
            ExitStatus::NotReady => 5,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitStatus;

    #[test]
    fn codes_are_those_of_the_design() {
        let all = [
            ExitStatus::Success,
            ExitStatus::Internal,
            ExitStatus::Invalid,
            ExitStatus::InputFailed,
            ExitStatus::Storage,
            ExitStatus::NotReady,
        ];
        let codes: Vec<u8> = all.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
    }
}
