//! Drops bot traffic from a click stream: clicks whose user agent names a
//! crawler, and clicks from the blocked IP prefix given as a parameter.

use weir_sdk::{Params, Row};

/// The columns this filter reads.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Click {
    pub agent: String,
    pub ip: String,
}

const BOT_MARKERS: [&str; 4] = ["bot", "crawler", "spider", "headless"];

/// True for clicks that look human.
pub fn is_human(c: Click) -> bool {
    let agent = c.agent.to_ascii_lowercase();
    if BOT_MARKERS.iter().any(|m| agent.contains(m)) {
        return false;
    }
    let blocked = weir_sdk::params();
    match blocked.text("blocked_prefix") {
        Some(prefix) if !prefix.is_empty() => !c.ip.starts_with(prefix),
        _ => true,
    }
}

/// Refuses an empty or wildcard prefix, which would drop everything.
pub fn check(p: &Params) -> Result<(), String> {
    match p.text("blocked_prefix") {
        Some("*") => Err("blocked_prefix `*` would drop every click".into()),
        _ => Ok(()),
    }
}

weir_sdk::export_filter!(is_human, init = check);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    fn click(agent: &str, ip: &str) -> Click {
        Click {
            agent: agent.into(),
            ip: ip.into(),
        }
    }

    #[test]
    fn drops_crawlers_and_blocked_prefix() {
        let h = Harness::new().param("blocked_prefix", "10.66.");
        let out = h
            .filter(
                is_human,
                vec![
                    click("Mozilla/5.0", "1.2.3.4"),
                    click("Googlebot/2.1", "1.2.3.5"),
                    click("Mozilla/5.0", "10.66.0.1"),
                ],
            )
            .unwrap();
        assert_eq!(out, vec![click("Mozilla/5.0", "1.2.3.4")]);
    }

    #[test]
    fn refuses_wildcard_prefix() {
        assert!(
            Harness::new()
                .param("blocked_prefix", "*")
                .init(check)
                .is_err()
        );
    }
}
