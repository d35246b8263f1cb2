//! Secrets never belong in the config file: any secret-looking key with a plain value is
//! refused, wherever it is; a reference table (`{ env = "NAME" }` / `{ file = "/path" }`) is
//! accepted.

use super::SECRET_KEYS;

pub(super) fn reject_inline_secrets(
    value: &toml::Value,
    path: &mut Vec<String>,
) -> Result<(), String> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(k.clone());
                let looks_secret = SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
                if looks_secret && !v.is_table() {
                    return Err(format!(
                        "`{}` holds a secret inline; secrets never belong in the config file. \
                         Keep Deepvue credentials in environment variables \
                         (credentials = {{ backend = \"env\" }}), a file readable only by the \
                         rotator (credentials = {{ backend = \"file\", path = \"…\" }}) or a secret \
                         manager; give other secret values by reference: {{ env = \"NAME\" }} or \
                         {{ file = \"/path\" }}",
                        display_path(path)
                    ));
                }
                reject_inline_secrets(v, path)?;
                path.pop();
            }
        }
        toml::Value::Array(items) => {
            let Some(base) = path.last().cloned() else {
                return Ok(());
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(last) = path.last_mut() {
                    *last = format!("{base}[{i}]");
                }
                reject_inline_secrets(item, path)?;
            }
            if let Some(last) = path.last_mut() {
                *last = base;
            }
        }
        _ => {}
    }
    Ok(())
}

fn display_path(path: &[String]) -> String {
    path.join(".")
}
