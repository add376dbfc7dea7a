//! Checks of a whole plan: what `check` and `run` warn about, and whether
//! it fits the data path.

use super::AgentConfig;

impl AgentConfig {
    /// What `check` and `run` warn about: valid settings that are usually
    /// a mistake.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(listen) = self.metrics_listen
            && !listen.ip().is_loopback()
        {
            warnings.push(format!(
                "metrics.listen = \"{listen}\" serves /metrics beyond this host, without authentication: \
                 it shows every service, backend and traffic figure; bind it to 127.0.0.1 or an address only \
                 your monitoring reaches"
            ));
        }
        warnings
    }

    /// Whether the configuration fits the data path's maps; `previous`
    /// (on a reload) counts the larger table of a service whose size
    /// changes, since both are live while it flips.
    pub fn capacity(
        &self,
        previous: Option<&AgentConfig>,
    ) -> Result<crate::dataplane::Capacity, crate::dataplane::CapacityError> {
        let needs: Vec<_> = self
            .services
            .iter()
            .map(|plan| {
                let mut needs = plan.needs();
                if let Some(old) = previous
                    .and_then(|p| p.services.iter().find(|o| o.spec.key() == plan.spec.key()))
                {
                    needs.table_size = needs.table_size.max(old.table_size);
                }
                needs
            })
            .collect();
        crate::dataplane::Capacity::check(&needs)
    }
}
