//! The ConfigMap with my.cnf, built from `spec.config`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ConfigMap;
use keeper_crds::MySQLInstanceSpec;
use sha2::{Digest, Sha256};

use super::InstanceMeta;

/// File name of the settings inside /etc/mysql/conf.d. The `zz-` prefix makes
/// it sort after the image's own files there, so the user's settings win.
pub const CONFIG_FILE: &str = "zz-keeper.cnf";

/// The ConfigMap `<name>-config` with one file, [`CONFIG_FILE`].
pub fn build(meta: &InstanceMeta, spec: &MySQLInstanceSpec) -> ConfigMap {
    ConfigMap {
        metadata: meta.owned_metadata(meta.config_map_name()),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_owned(),
            my_cnf(&meta.name, &spec.config),
        )])),
        ..ConfigMap::default()
    }
}

/// Server settings the operator needs, written before `spec.config`; a key
/// the user sets there (spelled with `_` or `-`) replaces the default.
///
/// * `log_bin_trust_function_creators = 1`: MySQL 8 turns the binary log on
///   by default, and with the binary log on a user without `SUPER` cannot
///   create stored functions (error 1419). Restores now run as root
///   (`crate::accounts`) and no longer need it; it stays for application
///   users, who are not `SUPER` either and may create functions.
pub const OPERATOR_DEFAULTS: &[(&str, &str)] = &[("log_bin_trust_function_creators", "1")];

/// A my.cnf option name in one spelling: mysqld treats `-` and `_` alike.
fn option_key(key: &str) -> String {
    key.trim().replace('-', "_").to_ascii_lowercase()
}

/// The `[mysqld]` section: [`OPERATOR_DEFAULTS`] the user did not set, then
/// `spec.config`. Keys and single-line values were checked by
/// `MySQLInstanceSpec::validate`; values are quoted when my.cnf would
/// otherwise cut or trim them.
pub fn my_cnf(instance: &str, config: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "# Managed by MySQL Keeper from spec.config of MySQLInstance {instance}; edits here are overwritten.\n[mysqld]\n"
    );
    let user_keys: Vec<String> = config.keys().map(|k| option_key(k)).collect();
    for (key, value) in OPERATOR_DEFAULTS {
        if !user_keys.contains(&option_key(key)) {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    for (key, value) in config {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{key} = {}", quote_value(value));
    }
    out
}

/// my.cnf starts a comment at `#` (also mid-line) and trims unquoted values;
/// a quoted value keeps both. Backslashes are escape characters either way.
fn quote_value(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\");
    let needs_quotes =
        value.contains(['#', ';', '"', '\'']) || value.trim() != value || value.is_empty();
    if !needs_quotes {
        escaped
    } else if !value.contains('"') {
        format!("\"{escaped}\"")
    } else {
        format!("'{}'", escaped.replace('\'', "\\'"))
    }
}

/// SHA-256 of the ConfigMap's data, put on the pod template so that a changed
/// setting restarts the server (mysqld reads my.cnf only at start).
pub fn content_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        let config = BTreeMap::from([
            ("max_connections".to_owned(), "300".to_owned()),
            (
                "init_connect".to_owned(),
                "SET NAMES utf8mb4 # x".to_owned(),
            ),
            ("ft_stopword_file".to_owned(), " padded ".to_owned()),
            ("secure_file_priv".to_owned(), String::new()),
            ("both".to_owned(), r#"a"b'c\d"#.to_owned()),
        ]);
        assert_eq!(
            my_cnf("demo", &config),
            "# Managed by MySQL Keeper from spec.config of MySQLInstance demo; edits here are overwritten.\n\
             [mysqld]\n\
             log_bin_trust_function_creators = 1\n\
             both = 'a\"b\\'c\\\\d'\n\
             ft_stopword_file = \" padded \"\n\
             init_connect = \"SET NAMES utf8mb4 # x\"\n\
             max_connections = 300\n\
             secure_file_priv = \"\"\n"
        );
    }

    #[test]
    fn user_values_replace_the_operators_defaults() {
        let config =
            BTreeMap::from([("log-bin-trust-function-creators".to_owned(), "0".to_owned())]);
        let cnf = my_cnf("demo", &config);
        assert!(
            cnf.ends_with("[mysqld]\nlog-bin-trust-function-creators = 0\n"),
            "{cnf}"
        );
        let defaults = my_cnf("demo", &BTreeMap::new());
        assert!(defaults.ends_with("[mysqld]\nlog_bin_trust_function_creators = 1\n"));
    }
}
