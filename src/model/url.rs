//! URLs as logs and errors may show them: without credentials.

/// `url` without user name, password, query or fragment, for logs.
pub fn redact_url(url: &str) -> String {
    match ::url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            let had_credentials = !parsed.username().is_empty() || parsed.password().is_some();
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let text = parsed.to_string();
            if had_credentials {
                text.replacen("://", "://[redacted]@", 1)
            } else {
                text
            }
        }
        // Not a URL: keep only its scheme, if any.
        Err(_) => match url.find("://") {
            Some(at) => format!("{}://[redacted]", &url[..at]),
            None => "[redacted]".to_string(),
        },
    }
}
