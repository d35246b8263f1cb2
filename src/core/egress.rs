//! Egress-IP diagnosis, the pure part: what the probes said, and whether it is whitelisted.
//!
//! Answers are validated as bare IPs; probes that disagree are reported as such rather than
//! guessed between. The probing itself is in `engine::egress`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// One observed IP and what said so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedIp {
    /// The address.
    pub ip: IpAddr,
    /// Whether it is inside `expected_ips` (`None` when no list is configured).
    pub in_expected: Option<bool>,
    /// The probe hosts that reported it.
    pub sources: Vec<String>,
}

/// What the probes found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EgressReport {
    /// Distinct IPs observed.
    pub observed: Vec<ObservedIp>,
    /// The configured whitelist.
    pub expected: Vec<String>,
    /// Probes that failed, with why.
    pub probe_errors: Vec<String>,
}

impl EgressReport {
    /// IPs observed outside the whitelist (empty when no whitelist is configured).
    pub fn outside_expected(&self) -> Vec<IpAddr> {
        self.observed
            .iter()
            .filter(|o| o.in_expected == Some(false))
            .map(|o| o.ip)
            .collect()
    }

    /// Whether probes named different IPs.
    pub fn disagree(&self) -> bool {
        self.observed.len() > 1
    }

    /// One sentence for operators, e.g. "egress IP 34.1.2.3 is not in the whitelist (expected
    /// 52.1.1.1)".
    pub fn summary(&self) -> String {
        if self.observed.is_empty() {
            return format!(
                "egress IP unknown (probes failed: {})",
                if self.probe_errors.is_empty() {
                    "none configured".into()
                } else {
                    self.probe_errors.join("; ")
                }
            );
        }
        let expected = if self.expected.is_empty() {
            "no egress.expected_ips configured".to_string()
        } else {
            format!("expected {}", self.expected.join(", "))
        };
        let describe = |o: &ObservedIp| match o.in_expected {
            Some(true) => format!("{} is in the whitelist", o.ip),
            Some(false) => format!("{} is not in the whitelist", o.ip),
            None => format!("{}", o.ip),
        };
        if self.disagree() {
            let each: Vec<String> = self
                .observed
                .iter()
                .map(|o| format!("{} says {}", o.sources.join("+"), describe(o)))
                .collect();
            format!("egress probes disagree: {} ({expected})", each.join("; "))
        } else {
            format!("egress IP {} ({expected})", describe(&self.observed[0]))
        }
    }
}

/// The report for a set of probe answers (probe host, IP or why not), compared with
/// `expected`.
pub fn evaluate(
    answers: impl IntoIterator<Item = (String, Result<IpAddr, String>)>,
    expected: &[IpNet],
) -> EgressReport {
    let mut report = EgressReport {
        expected: expected.iter().map(ToString::to_string).collect(),
        ..EgressReport::default()
    };
    for (host, answer) in answers {
        match answer {
            Ok(ip) => match report.observed.iter_mut().find(|o| o.ip == ip) {
                Some(o) => o.sources.push(host),
                None => report.observed.push(ObservedIp {
                    ip,
                    in_expected: (!expected.is_empty())
                        .then(|| expected.iter().any(|n| n.contains(&ip))),
                    sources: vec![host],
                }),
            },
            Err(e) => report.probe_errors.push(format!("{host}: {e}")),
        }
    }
    report
}

/// A probe answer must be a bare IP (whitespace allowed around it): anything else, a captive
/// portal's HTML page say, is rejected.
pub fn parse_ip_answer(body: &[u8]) -> Result<IpAddr, String> {
    if body.len() > 64 {
        return Err(format!(
            "answer is not an IP address ({} bytes)",
            body.len()
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "answer is not text".to_string())?;
    text.trim()
        .parse::<IpAddr>()
        .map_err(|_| "answer is not an IP address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_be_bare_ips() {
        assert_eq!(parse_ip_answer(b"34.1.2.3\n").ok(), "34.1.2.3".parse().ok());
        assert_eq!(
            parse_ip_answer(b" 2001:db8::1 ").ok(),
            "2001:db8::1".parse().ok()
        );
        assert!(parse_ip_answer(b"<html>login</html>").is_err());
        assert!(parse_ip_answer(b"").is_err());
        assert!(parse_ip_answer(&[b'1'; 100]).is_err());
    }

    #[test]
    fn summaries_say_exactly_what() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let mut r = EgressReport {
            observed: vec![ObservedIp {
                ip: ip("34.1.2.3"),
                in_expected: Some(false),
                sources: vec!["checkip.amazonaws.com".into(), "api.ipify.org".into()],
            }],
            expected: vec!["52.1.1.1/32".into()],
            probe_errors: vec![],
        };
        assert_eq!(
            r.summary(),
            "egress IP 34.1.2.3 is not in the whitelist (expected 52.1.1.1/32)"
        );
        assert_eq!(r.outside_expected(), vec![ip("34.1.2.3")]);
        r.observed.push(ObservedIp {
            ip: ip("52.1.1.1"),
            in_expected: Some(true),
            sources: vec!["b".into()],
        });
        r.observed[0].sources = vec!["a".into()];
        assert!(r.disagree());
        assert_eq!(
            r.summary(),
            "egress probes disagree: a says 34.1.2.3 is not in the whitelist; b says 52.1.1.1 is in the whitelist (expected 52.1.1.1/32)"
        );
        let none = EgressReport {
            probe_errors: vec!["a: timed out".into()],
            ..EgressReport::default()
        };
        assert_eq!(
            none.summary(),
            "egress IP unknown (probes failed: a: timed out)"
        );
    }
}
