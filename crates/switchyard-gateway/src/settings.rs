//! Configuration layering: built-in defaults, then the TOML file, then
//! `SWITCHYARD_*` environment variables, then command-line flags.
//!
//! The settings of the operations contract have a flag each, and clap reads
//! their fixed environment variables (`SWITCHYARD_LISTEN`, ...), so a flag
//! wins over its variable. Every other key can be set from the environment
//! by its path with `__` between levels: `SWITCHYARD_CLIENT__PING_INTERVAL=5s`.

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use std::net::SocketAddr;
use std::path::PathBuf;
use switchyard_core::config::Config;

/// The flags of `switchyard serve` that override configuration keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Public listener address [key: listen; default: 0.0.0.0:8080].
    #[arg(long, env = "SWITCHYARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Separate listener for /metrics, /healthz, /readyz [key: internal_listen].
    #[arg(long, env = "SWITCHYARD_INTERNAL_LISTEN", value_name = "ADDR")]
    pub internal_listen: Option<SocketAddr>,
    /// Redis URL; unset runs the in-memory broker [key: broker.redis_url].
    #[arg(long, env = "SWITCHYARD_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Key of the HTTP API; unset turns it off [key: api.key].
    #[arg(long, env = "SWITCHYARD_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Secret for HS256 connect tokens [key: auth.hmac_secret].
    #[arg(long, env = "SWITCHYARD_AUTH_HMAC_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub auth_hmac_secret: Option<String>,
    /// Allow clients without a token [key: auth.allow_anonymous; default: true].
    #[arg(long, env = "SWITCHYARD_AUTH_ALLOW_ANONYMOUS", value_name = "BOOL")]
    pub auth_allow_anonymous: Option<bool>,
    /// Password of the admin page; unset turns it off [key: admin.password].
    #[arg(long, env = "SWITCHYARD_ADMIN_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// This node's name [key: node_name; default: random].
    #[arg(long, env = "SWITCHYARD_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
}

/// A configuration that could not be loaded, said for a person.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl Overrides {
    /// The overrides as (key path, value) pairs, only those given.
    fn pairs(&self) -> Vec<(&'static str, figment::value::Value)> {
        use figment::value::Value;
        let mut pairs = Vec::new();
        let mut put = |key: &'static str, value: Option<Value>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        put("listen", self.listen.map(|a| Value::from(a.to_string())));
        put("internal_listen", self.internal_listen.map(|a| Value::from(a.to_string())));
        put("broker.redis_url", self.redis_url.clone().map(Value::from));
        put("api.key", self.api_key.clone().map(Value::from));
        put("auth.hmac_secret", self.auth_hmac_secret.clone().map(Value::from));
        put("auth.allow_anonymous", self.auth_allow_anonymous.map(Value::from));
        put("admin.password", self.admin_password.clone().map(Value::from));
        put("node_name", self.node_name.clone().map(Value::from));
        pairs
    }
}

/// Loads the effective configuration.
pub fn load(overrides: &Overrides) -> Result<Config, SettingsError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &overrides.config {
        if !path.is_file() {
            return Err(SettingsError(format!("config file {} does not exist", path.display())));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed("SWITCHYARD_").filter(|key| key.as_str().contains("__")).split("__"));
    for (key, value) in overrides.pairs() {
        figment = figment.merge(Serialized::default(key, value));
    }
    let config: Config = figment.extract().map_err(|e| SettingsError(describe(e)))?;
    config.validate().map_err(|e| SettingsError(format!("invalid configuration: {e}")))
}

fn describe(error: figment::Error) -> String {
    error.into_iter().map(|e| format!("invalid configuration: {e}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("switchyard-test-{:x}.toml", rand::random::<u64>()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        fn overrides(&self) -> Overrides {
            Overrides { config: Some(self.0.clone()), ..Default::default() }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = TempFile::new("listen = \"127.0.0.1:1000\"\n[auth]\nallow_anonymous = false\n");
        let overrides = Overrides { listen: Some("127.0.0.1:2000".parse().unwrap()), ..f.overrides() };
        let config = load(&overrides).unwrap();
        assert_eq!(config.listen.port(), 2000);
        assert!(!config.auth.allow_anonymous);
    }

    #[test]
    fn errors_name_the_key() {
        let f = TempFile::new("[client]\nping_interval = \"soon\"\n");
        let error = load(&f.overrides()).unwrap_err();
        assert!(error.to_string().contains("ping_interval"), "{error}");
        let f = TempFile::new("[namespaces.chat]\nhistory_size = 5\n");
        let error = load(&f.overrides()).unwrap_err();
        assert!(error.to_string().contains("namespaces.chat.history_ttl"), "{error}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let overrides = Overrides { config: Some("/nonexistent/switchyard.toml".into()), ..Default::default() };
        assert!(load(&overrides).unwrap_err().to_string().contains("does not exist"));
    }
}
