//! `[backup]`: when the daemon copies its store database aside, where to, and how many to keep.
//!
//! Why apart from the backup code: the section is read and checked with the rest of the
//! configuration before anything runs, and the one-shot `flashkart-edge backup` command reads
//! the same directory and `keep` as the daemon's schedule.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The longest interval accepted: a week. A longer one is almost certainly a typo (minutes
/// meant as seconds), and a store whose last copy is older than that has little to restore.
pub const MAX_INTERVAL_MINUTES: u32 = 7 * 24 * 60;

/// `[backup]` in edge.toml: scheduled online backups of the store database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Take backups on a schedule while the daemon runs (`FLASHKART_EDGE_BACKUP_ENABLED`).
    pub enabled: bool,
    /// Where backups are written (`FLASHKART_EDGE_BACKUP_DIR`); `<data_dir>/backups` by default.
    pub dir: Option<PathBuf>,
    /// Minutes between backups, the first one this long after start
    /// (`FLASHKART_EDGE_BACKUP_INTERVAL_MINUTES`); 360 (6 hours) by default.
    pub interval_minutes: u32,
    /// How many backups to keep, newest first (`FLASHKART_EDGE_BACKUP_KEEP`); at least 1.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            interval_minutes: 360,
            keep: 8,
        }
    }
}

impl BackupConfig {
    /// Refuses settings the schedule cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_INTERVAL_MINUTES).contains(&self.interval_minutes) {
            return Err(format!(
                "[backup] interval_minutes {} is outside 1..={MAX_INTERVAL_MINUTES}",
                self.interval_minutes
            ));
        }
        if self.keep == 0 {
            return Err("[backup] keep must be at least 1".into());
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err("[backup] dir is empty; leave it out for <data_dir>/backups".into());
        }
        Ok(())
    }

    /// The backup directory in force for a daemon whose data lives in `data_dir`.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("backups"))
    }

    /// Applies `FLASHKART_EDGE_BACKUP_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let bad = |name: &str, value: &str| format!("{name}={value} is not valid");
        if let Some(v) = var("FLASHKART_EDGE_BACKUP_ENABLED") {
            self.enabled = match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => return Err(bad("FLASHKART_EDGE_BACKUP_ENABLED", &v)),
            };
        }
        if let Some(v) = var("FLASHKART_EDGE_BACKUP_DIR") {
            self.dir = Some(v.into());
        }
        if let Some(v) = var("FLASHKART_EDGE_BACKUP_INTERVAL_MINUTES") {
            self.interval_minutes = v
                .parse()
                .map_err(|_| bad("FLASHKART_EDGE_BACKUP_INTERVAL_MINUTES", &v))?;
        }
        if let Some(v) = var("FLASHKART_EDGE_BACKUP_KEEP") {
            self.keep = v
                .parse()
                .map_err(|_| bad("FLASHKART_EDGE_BACKUP_KEEP", &v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_env_and_validation() {
        let config = BackupConfig::default();
        assert!(config.enabled);
        assert_eq!(config.keep, 8);
        assert_eq!(config.interval_minutes, 360);
        assert_eq!(
            config.dir_in(Path::new("/data")),
            PathBuf::from("/data/backups")
        );
        assert_eq!(config.validate(), Ok(()));

        let mut config: BackupConfig =
            toml::from_str("enabled = false\ndir = \"/b\"\ninterval_minutes = 30\nkeep = 2\n")
                .expect("valid section");
        assert_eq!(config.dir_in(Path::new("/data")), PathBuf::from("/b"));
        config
            .apply_env(&|name| match name {
                "FLASHKART_EDGE_BACKUP_ENABLED" => Some("true".into()),
                "FLASHKART_EDGE_BACKUP_KEEP" => Some("3".into()),
                "FLASHKART_EDGE_BACKUP_INTERVAL_MINUTES" => Some("15".into()),
                _ => None,
            })
            .expect("valid env");
        assert!(config.enabled);
        assert_eq!((config.keep, config.interval_minutes), (3, 15));

        let refused = |config: BackupConfig| config.validate().expect_err("refused");
        assert!(
            refused(BackupConfig {
                keep: 0,
                ..BackupConfig::default()
            })
            .contains("keep must be at least 1")
        );
        assert!(
            refused(BackupConfig {
                interval_minutes: 0,
                ..BackupConfig::default()
            })
            .contains("interval_minutes 0")
        );
        assert!(
            config
                .apply_env(&|n| (n == "FLASHKART_EDGE_BACKUP_KEEP").then(|| "many".into()))
                .is_err()
        );
        assert!(toml::from_str::<BackupConfig>("every = \"6h\"").is_err());
    }

    #[test]
    fn the_example_config_documents_the_section() {
        let text = include_str!("../../../deploy/edge.example.toml");
        assert!(text.contains("\n[backup]\n"));
        let config: crate::Config = toml::from_str(text).expect("example parses");
        assert_eq!(config.backup, BackupConfig::default());
        config.validate().expect("example is valid");
    }
}
