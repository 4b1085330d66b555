//! Quoting for the places the charm writes text that another program parses.

/// Quote `s` for a POSIX shell (and for Nagios' NRPE, which hands command
/// lines to a shell): bare when it is made of safe characters only, else in
/// single quotes with each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("check_http"), "check_http");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("It works!"), "'It works!'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }
}
