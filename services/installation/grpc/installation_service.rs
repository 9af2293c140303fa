//! `promotion.v1.InstallationService`: pre-runs, installations and rollbacks.
use std::sync::Arc;

use crate::installation::state::State;
use crate::proto::v1 as pb;

pub struct InstallationApi {
    #[allow(dead_code)]
    state: Arc<State>,
}

impl InstallationApi {
    pub fn new(state: Arc<State>) -> Self {
        InstallationApi { state }
    }
}

#[tonic::async_trait]
impl pb::installation_service_server::InstallationService for InstallationApi {}
