//! The two Prometheus exposition formats and the choice between them: OpenMetrics 1.0.0 (what
//! `prometheus-client` encodes) and the classic text format 0.0.4 (what node_exporter's textfile
//! collector and the Pushgateway read, and what a scraper gets unless it asks for OpenMetrics).

/// `Content-Type` of an OpenMetrics answer.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of a text-format answer.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (a media range
/// `application/openmetrics-text` that is not refused with `q=0`). Anything else, no header
/// included, gets the text format, as Prometheus' own client libraries answer.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !parts.any(|p| {
                    p.split_once('=').is_some_and(|(k, v)| {
                        k.trim().eq_ignore_ascii_case("q")
                            && v.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
                    })
                })
        })
    })
}

/// The OpenMetrics exposition `om` in the text format 0.0.4: a counter's `HELP` and `TYPE`
/// name its `_total` series (OpenMetrics names the family without the suffix), `# UNIT` and
/// `# EOF` go. Samples are the same in both.
pub fn to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.rsplit_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(om.len() + counters.len() * 16);
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The value of label `name` in one sample line (`metric{a="x",b="y"} 1`), unescaped.
fn label_value(sample: &str, name: &str) -> Option<String> {
    let open = sample.find('{')?;
    let mut rest = &sample[open + 1..];
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.starts_with('}') || rest.is_empty() {
            return None;
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

/// A text-format exposition split by the value of label `name`: one exposition per value
/// (`None`: the series without it), each family's `HELP` and `TYPE` kept before its samples
/// in every part that has some; a family with no samples goes.
pub fn split_by_label(
    text: &str,
    name: &str,
) -> std::collections::BTreeMap<Option<String>, String> {
    let mut parts: std::collections::BTreeMap<Option<String>, String> = Default::default();
    let mut meta: Vec<&str> = Vec::new();
    // Which parts already have the current family's HELP and TYPE.
    let mut started: std::collections::HashSet<Option<String>> = Default::default();
    for line in text.lines() {
        if line.starts_with('#') {
            if line.starts_with("# HELP ") {
                meta.clear();
                started.clear();
            }
            meta.push(line);
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let key = label_value(line, name);
        let part = parts.entry(key.clone()).or_default();
        if started.insert(key) {
            for m in &meta {
                part.push_str(m);
                part.push('\n');
            }
        }
        part.push_str(line);
        part.push('\n');
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_openmetrics_only_when_asked() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(wants_openmetrics(Some("Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0, text/plain"
        )));
    }

    #[test]
    fn counters_get_their_total_name_and_eof_goes() {
        let om = "# HELP a_rotations Rotations.\n# TYPE a_rotations counter\n\
                  a_rotations_total{token=\"x\"} 1\n# HELP a_expiry When.\n# TYPE a_expiry gauge\n\
                  # UNIT a_expiry seconds\na_expiry 5\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP a_rotations_total Rotations.\n# TYPE a_rotations_total counter\n\
             a_rotations_total{token=\"x\"} 1\n# HELP a_expiry When.\n# TYPE a_expiry gauge\n\
             a_expiry 5\n"
        );
    }

    #[test]
    fn a_split_keeps_each_familys_help_before_its_samples() {
        let text = "# HELP r_total R.\n# TYPE r_total counter\nr_total{token=\"a\",o=\"x\"} 1\n\
                    r_total{o=\"y\",token=\"b\"} 2\n# HELP e E.\n# TYPE e gauge\n\
                    # HELP i I.\n# TYPE i gauge\ni{v=\"1\\\"2\"} 1\n";
        let parts = split_by_label(text, "token");
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(
            parts[&Some("a".to_string())],
            "# HELP r_total R.\n# TYPE r_total counter\nr_total{token=\"a\",o=\"x\"} 1\n"
        );
        assert_eq!(
            parts[&Some("b".to_string())],
            "# HELP r_total R.\n# TYPE r_total counter\nr_total{o=\"y\",token=\"b\"} 2\n"
        );
        assert_eq!(
            parts[&None],
            "# HELP i I.\n# TYPE i gauge\ni{v=\"1\\\"2\"} 1\n"
        );
        assert_eq!(
            label_value("r{token=\"a\\\\\"} 3", "token").as_deref(),
            Some("a\\")
        );
        assert_eq!(label_value("r 3", "token"), None);
    }
}
