//! The `WEBSOCKETS_DISABLE` switch: turn WebSockets off for local testing,
//! or behind a proxy that does not pass them, without changing code.

/// The environment variable: `1`, `true` or `yes` (any case) switches
/// WebSockets off.
pub const DISABLE_ENV: &str = "WEBSOCKETS_DISABLE";

/// Whether `WEBSOCKETS_DISABLE` is set to `1`, `true` or `yes` (any case).
///
/// ```
/// // Unset in doctests.
/// assert!(!sockeye_hyper::disabled_by_env() || std::env::var("WEBSOCKETS_DISABLE").is_ok());
/// ```
pub fn disabled_by_env() -> bool {
    std::env::var(DISABLE_ENV).is_ok_and(|v| is_truthy(&v))
}

/// `1`, `true` or `yes`, ignoring case and surrounding whitespace.
pub(crate) fn is_truthy(value: &str) -> bool {
    let v = value.trim();
    v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
}

/// A builder setting: `Some` overrides the environment either way.
pub(crate) fn resolve(setting: Option<bool>) -> bool {
    setting.unwrap_or_else(disabled_by_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthy_values() {
        for yes in ["1", "true", "TRUE", "Yes", " yes "] {
            assert!(is_truthy(yes), "{yes}");
        }
        for no in ["0", "false", "no", "", "y", "on"] {
            assert!(!is_truthy(no), "{no}");
        }
        assert!(resolve(Some(true)));
        assert!(!resolve(Some(false)));
    }
}
