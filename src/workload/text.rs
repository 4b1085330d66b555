//! Text the workload writes for another program to parse (shell quoting)
//! or for a person to read (timestamps, URLs without their credentials).

use std::path::Path;

use reqwest::Url;

/// An I/O error with the path it happened on, for `map_err`: the kernel's
/// own text ("Permission denied (os error 13)") names none.
pub fn at_path(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

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

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(epoch_seconds: i64) -> String {
    let days = epoch_seconds.div_euclid(86_400);
    let secs = epoch_seconds.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

/// `text` with the `user:password@` of every URL in it left out: output of
/// programs the charm runs (apt, uv, pip) may quote a proxy or index URL
/// with its credentials, and such output ends up in statuses and logs.
pub fn without_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => out.push_str(&authority[userinfo_end + 1..]),
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod credential_tests {
    use super::without_url_credentials;

    #[test]
    fn userinfo_goes_and_everything_else_stays() {
        assert_eq!(
            without_url_credentials(
                "Could not connect to http://bob:s3cret@proxy:3128/ (Err) | see https://pypi.org/simple/"
            ),
            "Could not connect to http://proxy:3128/ (Err) | see https://pypi.org/simple/"
        );
        assert_eq!(
            without_url_credentials("a://u@h b://x:p@ss@h2/p?q=u@v"),
            "a://h b://h2/p?q=u@v"
        );
        assert_eq!(
            without_url_credentials("no urls, user@host"),
            "no urls, user@host"
        );
        assert_eq!(without_url_credentials("ends with ://"), "ends with ://");
        assert_eq!(without_url_credentials("http://ü:ö@höst"), "http://höst");
    }
}

/// A URL or proxy setting as a message may show it, parsed or not (see
/// [`redact_url`]).
pub(crate) fn redact_url_text(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) if url.has_host() => redact_url(&url),
        _ => redact_unparsed(raw),
    }
}

/// The URL as it may appear in a message: no userinfo, no query, no fragment.
pub(crate) fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

pub(crate) fn redact_unparsed(raw: &str) -> String {
    let scheme_end = raw.find("://").map(|i| i + 3).unwrap_or(0);
    let (scheme, rest) = raw.split_at(scheme_end);
    let rest = match rest.rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    format!("{scheme}{rest}")
}
