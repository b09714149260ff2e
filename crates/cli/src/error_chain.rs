//! How `softsev` prints an error: the context chain joined with ": ", without a cause
//! whose text the message already carries. Many errors embed their source's text
//! (thiserror `"…: {0}"`) and also return it as `source()`, and a context may repeat
//! what the error says; printed naively, the same words appear twice (probe P13:
//! "SEV metadata version 2 is not 1: SEV metadata version 2 is not 1").

/// The chain of `e` as one line, each distinct piece once.
pub(crate) fn render(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() {
            continue;
        }
        match parts.last_mut() {
            // The cause says nothing the message before it does not already say.
            Some(last) if last.contains(&text) => {}
            // The cause repeats the context and adds to it: keep only the cause.
            Some(last) if text.contains(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::render;
    use anyhow::Context;

    #[derive(Debug, thiserror::Error)]
    #[error("SEV metadata version {0} is not 1")]
    struct Version(u32);

    #[derive(Debug, thiserror::Error)]
    #[error("firmware: {0}")]
    struct Firmware(#[source] Version);

    #[test]
    fn repeated_causes_are_printed_once() {
        let e = anyhow::Error::new(Firmware(Version(2)));
        assert_eq!(render(&e), "firmware: SEV metadata version 2 is not 1");

        let e =
            anyhow::anyhow!("custom roots in D: no ARK certificate").context("custom roots in D");
        assert_eq!(render(&e), "custom roots in D: no ARK certificate");

        let io = std::io::Error::from_raw_os_error(20);
        let e = anyhow::Error::new(io)
            .context(format!("X: {}", std::io::Error::from_raw_os_error(20)))
            .context("reading D");
        assert_eq!(render(&e), "reading D: X: Not a directory (os error 20)");

        let r: Result<(), std::io::Error> = Err(std::io::Error::from_raw_os_error(13));
        let e = r.context("writing out/summary.json").unwrap_err();
        assert_eq!(
            render(&e),
            "writing out/summary.json: Permission denied (os error 13)"
        );
    }
}
